"""``make build``: ``sam build`` with a Python 3.12 it can use, found rather than demanded.

SAM builds the layer with the functions' runtime (``python3.12``) and stops with "Binary
validation failed" when ``python3.12`` on ``PATH`` does not run. In order, this looks for:

1. a ``python3.12`` on ``PATH`` that runs;
2. pyenv with a 3.12 installed: ``PYENV_VERSION=<yours>:3.12.x`` makes its ``python3.12``
   shim run, for this build only;
3. uv with a 3.12 installed (``uv python find 3.12``): its directory goes first on ``PATH``;
4. a Docker daemon that answers: ``sam build --use-container`` (Lambda's own build image);

else it says exactly how to get one and exits 2. ``--plan`` prints the choice without building.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RUNTIME = "3.12"
ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"

HOW_TO_GET_IT = f"""\
sam build needs Python {RUNTIME} (the functions' runtime) and none was found. Any one of:
  pyenv install {RUNTIME}                 # then `make build` finds it by itself
  uv python install {RUNTIME}             # likewise
  sudo apt-get install python{RUNTIME}    # Debian/Ubuntu, where the release packages it (deadsnakes PPA on Ubuntu)
  brew install python@{RUNTIME}           # macOS
or start Docker: `make build` then runs `sam build --use-container` in Lambda's build image."""


@dataclass
class Plan:
    """How to run ``sam build``: extra arguments and environment changes."""

    how: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _runs_312(python: str, env: Mapping[str, str]) -> bool:
    try:
        out = subprocess.run(  # noqa: S603 - a python found on PATH, run with a constant program
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == RUNTIME


def _output(command: Sequence[str], env: Mapping[str, str]) -> str | None:
    try:  # pyenv, uv or docker found on PATH, with fixed arguments
        out = subprocess.run(list(command), capture_output=True, text=True, env=dict(env), timeout=60)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def plan(env: Mapping[str, str] | None = None) -> Plan | None:
    """The first way to build that works here, or None."""
    env = dict(os.environ if env is None else env)
    path = env.get("PATH", "")
    found = shutil.which(f"python{RUNTIME}", path=path)
    if found and _runs_312(found, env):
        return Plan(f"python{RUNTIME} on PATH ({found})")
    pyenv = shutil.which("pyenv", path=path)
    if pyenv:
        versions = (_output([pyenv, "versions", "--bare", "--skip-aliases"], env) or "").split()
        wanted = sorted((v for v in versions if v.startswith(f"{RUNTIME}.")), key=_version_key)
        current = (_output([pyenv, "version-name"], env) or "").strip()
        if wanted and found:
            pyenv_version = ":".join(v for v in [*current.split(":"), wanted[-1]] if v)
            trial = {**env, "PYENV_VERSION": pyenv_version}
            if _runs_312(found, trial):
                how = f"pyenv's {wanted[-1]} (PYENV_VERSION={pyenv_version})"
                return Plan(how, env={"PYENV_VERSION": pyenv_version})
    uv = shutil.which("uv", path=path)
    if uv:
        python = (_output([uv, "python", "find", RUNTIME], env) or "").strip()
        if python and _runs_312(python, env):
            bin_dir = str(Path(python).parent)
            if shutil.which(f"python{RUNTIME}", path=bin_dir):
                return Plan(f"uv's Python {RUNTIME} ({python})", env={"PATH": f"{bin_dir}{os.pathsep}{path}"})
    docker = shutil.which("docker", path=path)
    if docker and _output([docker, "info", "--format", "{{.ServerVersion}}"], env):
        return Plan("Docker (sam build --use-container)", args=["--use-container"])
    return None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--plan", action="store_true", help="print how it would build, and stop")
    parser.add_argument("sam_args", nargs="*", help="more arguments for sam build")
    args = parser.parse_args(argv)
    chosen = plan()
    if chosen is None:
        print(HOW_TO_GET_IT, file=sys.stderr)
        return 2
    print(f"sam build with {chosen.how}", flush=True)
    if args.plan:
        return 0
    env = {**os.environ, **chosen.env, "SAM_CLI_TELEMETRY": "0"}
    command = [str(SAM), "build", "--template", str(ROOT / "template.yaml"), *chosen.args, *args.sam_args]
    return subprocess.run(command, env=env, cwd=ROOT).returncode  # noqa: S603 - our SAM CLI, our arguments


if __name__ == "__main__":
    sys.exit(main())
