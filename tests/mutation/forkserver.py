"""A process that has imported the test run's libraries once and forks a pytest run per request.

A mutant's test run was mostly interpreter start: importing boto3, botocore, moto, pydantic,
openai and pytest took two of its three seconds of CPU before the first test ran, ninety times
over. Forked from this process, each run starts with those imported and imports the rest itself
from its own tree: nothing of the project (``chat_sessions``, ``local_stack``, ``tests``, the
handlers) is imported here, so a mutated store module is always read from the mutated copy, and
the unmutated runs go through the same server, so "passes unmutated" and "fails mutated" are
judged alike. Libraries that read the environment when imported (Powertools, the X-Ray SDK) are
left to each run too, since the tests' conftest sets that environment.

Protocol (``tests/mutation/__main__.py`` speaks it): one JSON request a line on stdin,
``{"tree", "args", "env", "output", "write_bytecode"}``; for each, ``pid N`` once the run is
forked (it leads its own process group, so it can be ended with its children) and ``exit N``
when it ends (pytest's exit status, or -signal). EOF on stdin ends the server.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

PRELOAD = (
    "boto3",
    "boto3.dynamodb.types",
    "boto3.dynamodb.conditions",
    "botocore.session",
    "botocore.client",
    "botocore.loaders",
    "moto",
    "moto.core",
    "moto.core.models",
    "moto.backends",
    "moto.dynamodb",
    "moto.dynamodb.models",
    "moto.dynamodb.responses",
    "pydantic",
    "openai",
    "httpx",
    "yaml",
    "pytest",
    "_pytest.python",
    "_pytest.fixtures",
    "hypothesis",
    "anyio",
)
"""Not the pytest plugins themselves: pytest rewrites a plugin's asserts as it imports it, and
warns about one already imported."""
TREE_PATHS = ("layers/common/python", "functions", ".")


def run(request: dict[str, object], base_path: list[str]) -> int:
    """Fork a pytest run for ``request``; returns the child's pid (the caller waits for it)."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        tree = str(request["tree"])
        out = os.open(str(request["output"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.chdir(tree)
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.join(tree, p) for p in TREE_PATHS)
        sys.path[:] = [os.path.join(tree, p) for p in TREE_PATHS] + base_path
        sys.dont_write_bytecode = not request.get("write_bytecode", False)
        sys.argv = ["pytest"]
        import pytest

        code = int(pytest.main([str(arg) for arg in list(request["args"])]))  # type: ignore[call-overload]
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as exc:  # anything that escapes pytest: reported, never run as the server
        try:
            os.write(2, f"fork server: the run failed: {exc!r}\n".encode())
        finally:
            os._exit(3)
    os._exit(code)


def main() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # an optional library missing here is missing in the run too
            importlib.import_module(name)
    base_path = [p for p in sys.path[1:] if p]  # without this script's folder (the working tree)
    for line in sys.stdin:
        pid = run(json.loads(line), base_path)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
