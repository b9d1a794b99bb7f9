"""Cold start: how long each function's handler module takes to import, against ``import boto3``.

``python -m benchmarks.cold_start [--runs 7]`` (``make bench-cold-start``). Each sample is a fresh
interpreter (as a Lambda cold start is) that imports one handler module with the function's
template ``Environment``, ``AWS_LAMBDA_FUNCTION_NAME`` and ``_HANDLER`` set, as Lambda sets them
(so Powertools' Tracer, Logger and Metrics initialise as they do there, and the garbage collector
is paused during the import as it is there: ``chat_sessions.coldstart``), and reports the import's
CPU time (on a busy machine wall time would count the other processes too); the baseline
imports boto3 alone, which every function needs.

The interpreter sees what the function sees deployed and nothing else: the layer's packages,
installed from its lock (``layers/common/python/requirements.txt``) into ``--site`` by
``make bench-cold-start``, our layer code and the handlers, and the standard library (``-S``:
not the development virtualenv, whose extra packages change what gets imported: ``openai``
imports ``aiohttp`` when it is installed, and the test tools bring it; pydantic scans every
installed distribution's entry points for plugins). The wheels are this machine's (x86_64, its
Python), not Lambda's arm64 ones: the same versions and the same Python code.

Two reference rows bound what any handler can reach: :mod:`benchmarks.cold_start_floor` imports
what every HTTP handler needs whatever its route (boto3, Powertools' Logger and Metrics, the
``APIGatewayHttpResolver`` with validation and one route, one pydantic model), and the same
without the resolver (what a stream consumer needs), both with the collector paused from their
first line. Samples of all modules are interleaved, round after round, so a busy machine slows
them alike; the median is reported, with the ratio to boto3's median. A benchmark, not a test:
the figures depend on the machine. ``-X importtime`` for one module shows where its time goes:
``PYTHONPATH=layers/common/python:functions python -X importtime -c 'import get_session'``.

Writes ``benchmarks/cold_start.md`` (the table the README quotes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from local_stack import template as cfn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "cold_start.md"
SITE = ROOT / ".cache" / "cold-start-layer"
"""The layer's packages (``make bench-cold-start`` installs them here from the layer's lock)."""
BASELINE = "boto3"
FLOORS = {
    "benchmarks.cold_start_floor.http": "(floor) any HTTP handler",
    "benchmarks.cold_start_floor.stream": "(floor) resolver-less handler",
}
"""Reference modules: what the frameworks cost before any code of ours (see the module)."""
TARGET = 1.5  # non-model handlers: at most this many times boto3's import
# CPU time of the import: on a busy machine, wall time measures the other processes as well.
PROBE = (
    "import time, importlib, sys; t = time.process_time(); importlib.import_module(sys.argv[1]); "
    "print(time.process_time() - t)"
)


def sample(module: str, env: dict[str, str]) -> float:
    # -S: no site-packages but the layer's (on PYTHONPATH); the current directory (the
    # repository, for the floor modules) is on the path as for any ``-c``.
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, module], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip()) * 1000


def environments(site: Path = SITE) -> dict[str, tuple[str, dict[str, str]]]:
    """module -> (logical id, the environment its cold start runs with)."""
    template = cfn.load()
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(map(str, [site, *cfn.layer_dirs(template), ROOT / "functions"])),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "chat-sessions",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for logical_id, resource in sorted(cfn.functions(template).items()):
        module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
        env = {
            **cfn.environment_for(logical_id, base),
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "_HANDLER": resource["Properties"]["Handler"],
        }
        found[module] = (logical_id, env)
    return found


def model_modules() -> set[str]:
    """Handlers of the functions that call the model: those the template gives the key parameter."""
    return {
        resource["Properties"]["Handler"].rsplit(".", 1)[0]
        for resource in cfn.functions(cfn.load()).values()
        if "OPENAI_API_KEY_PARAMETER" in resource["Properties"].get("Environment", {}).get("Variables", {})
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Handler import time per function against import boto3.")
    parser.add_argument("--runs", type=int, default=7, help="samples per module (default 7)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/cold_start.md")
    parser.add_argument("--site", type=Path, default=SITE, help=f"the layer's packages (default {SITE})")
    args = parser.parse_args(argv)
    if not (args.site / "boto3").is_dir():
        parser.error(f"{args.site} holds no layer packages: run `make bench-cold-start`")
    envs = environments(args.site)
    model = model_modules()
    baseline_env = next(iter(envs.values()))[1]
    modules = [BASELINE, *FLOORS, *envs]
    times: dict[str, list[float]] = {m: [] for m in modules}
    for module in modules:  # warm-up: compile .pyc files, fill the OS page cache
        sample(module, envs[module][1] if module in envs else baseline_env)
    traced: dict[str, list[float]] = {m: [] for m in envs}
    for round_ in range(args.runs):
        for module in modules:
            times[module].append(sample(module, envs[module][1] if module in envs else baseline_env))
            if module in envs:  # the same with the X-Ray SDK on (PowertoolsTraceDisabled=false)
                traced[module].append(sample(module, {**envs[module][1], "POWERTOOLS_TRACE_DISABLED": "false"}))
        print(f"round {round_ + 1}/{args.runs}", file=sys.stderr, flush=True)
    base = statistics.median(times[BASELINE])
    lines = [
        "| function | handler | import, ms | x boto3 | with the X-Ray SDK, ms | x boto3 |",
        "|---|---|---:|---:|---:|---:|",
        f"| (baseline) | `import boto3` | {base:.0f} | 1.00 | | |",
    ]
    for module, label in FLOORS.items():
        median = statistics.median(times[module])
        lines.append(f"| {label} | `{module.rsplit('.', 1)[1]}` | {median:.0f} | {median / base:.2f} | | |")
    worst_plain = 0.0
    for module in sorted(envs, key=lambda m: (m in model, m)):
        median = statistics.median(times[module])
        with_sdk = statistics.median(traced[module])
        ratio = median / base
        if module not in model:
            worst_plain = max(worst_plain, ratio)
        marker = " (model)" if module in model else ""
        cells = [envs[module][0], f"`{module}`{marker}", f"{median:.0f}", f"{ratio:.2f}"]
        cells += [f"{with_sdk:.0f}", f"{with_sdk / base:.2f}"]
        lines.append(f"| {' | '.join(cells)} |")
    summary = (
        f"CPU time of the import, median of {args.runs} fresh interpreters per module, interleaved, with the "
        f"layer's packages only; Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end. Non-model handlers at most {worst_plain:.2f}x boto3 "
        f"(target {TARGET}x) with the template's defaults."
    )
    table = "\n".join(lines)
    print(table)
    print(summary)
    if not args.no_write:
        OUT.write_text(f"# Cold start: handler import time\n\n{summary}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
