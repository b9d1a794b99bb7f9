"""What a cold start imports (the figures: benchmarks/cold_start.py, README "Cold start").

The X-Ray SDK costs about one boto3 import (it builds an X-Ray client at import), so it is
imported only when the template's ``PowertoolsTraceDisabled`` is "false"; by default no handler
imports it. Powertools Idempotency is imported by the first request with an ``Idempotency-Key``
(``chat_sessions.idempotency``), never at import. Two interpreters, each importing handlers with
the template's environment for them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from typing import Any

from benchmarks.cold_start import FLOORS
from local_stack import template as cfn

TEMPLATE = cfn.load()
IDEMPOTENCY = "aws_lambda_powertools.utilities.idempotency"
PROBE = f"""
import importlib, json, sys
IDEMPOTENCY = {IDEMPOTENCY!r}
for module in sys.argv[1:]:
    importlib.import_module(module)
print(json.dumps(sorted(m for m in ("aws_xray_sdk", "openai", IDEMPOTENCY) if m in sys.modules)))
"""


def imported(logical_ids: list[str], **overrides: str) -> list[str]:
    """Heavy packages in sys.modules after importing these functions' handlers, in one fresh
    interpreter with the (first) function's template environment, as Lambda sets it."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(map(str, [*cfn.layer_dirs(TEMPLATE), cfn.ROOT / "functions"])),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": logical_ids[0],
    }
    env = {**cfn.environment_for(logical_ids[0], base), **overrides}
    functions = cfn.functions(TEMPLATE)
    modules = [functions[name]["Properties"]["Handler"].rsplit(".", 1)[0] for name in logical_ids]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    found: list[str] = json.loads(out.stdout)
    return found


def test_no_handler_imports_the_xray_sdk_by_default() -> None:
    assert TEMPLATE["Parameters"]["PowertoolsTraceDisabled"]["Default"] == "true"
    globals_env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_TRACE_DISABLED"] == {"Ref": "PowertoolsTraceDisabled"}
    every = sorted(cfn.functions(TEMPLATE))
    found = imported(every)
    assert "aws_xray_sdk" not in found
    assert IDEMPOTENCY not in found  # checked in the same interpreter: a fresh one costs seconds


def test_the_xray_sdk_traces_when_asked() -> None:
    assert imported(["GetSessionFunction"], POWERTOOLS_TRACE_DISABLED="false") == ["aws_xray_sdk"]


GC_PROBE = """
import gc, importlib, json, sys
import chat_sessions  # the package's import pauses collection when _HANDLER is set
from chat_sessions import coldstart
paused = not gc.isenabled()
left_paused = []
for module in sys.argv[1:]:
    coldstart.pause()  # as the package's import does in each function's own interpreter
    importlib.import_module(module)
    if not gc.isenabled():
        left_paused.append(module)
print(json.dumps({"paused": paused, "left_paused": left_paused, "frozen": gc.get_freeze_count() > 0}))
"""


def gc_after_import(with_handler: bool) -> dict[str, Any]:
    functions = cfn.functions(TEMPLATE)
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(map(str, [*cfn.layer_dirs(TEMPLATE), cfn.ROOT / "functions"])),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "GetSessionFunction",
    }
    env = cfn.environment_for("GetSessionFunction", base)
    if with_handler:
        env["_HANDLER"] = functions["GetSessionFunction"]["Properties"]["Handler"]
    modules = sorted(f["Properties"]["Handler"].rsplit(".", 1)[0] for f in functions.values())
    out = subprocess.run(
        [sys.executable, "-c", GC_PROBE, *modules], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def test_every_handler_resumes_garbage_collection_once_built() -> None:
    """In Lambda (``_HANDLER`` set) importing the package pauses the collector; every function's
    handler module resumes it once built (else it would run with no cycle collection at all),
    freezing what its import made."""
    assert gc_after_import(with_handler=True) == {"paused": True, "left_paused": [], "frozen": True}


def test_every_handler_imports_the_package_first() -> None:
    """The package's import pauses the collector: imported after Powertools or boto3, their
    import would run with it (an HTTP handler's first import used to be Powertools' event
    handler: 8 to 14 ms of collections before ours began)."""
    firsts = {}
    for resource in cfn.functions(TEMPLATE).values():
        module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
        tree = ast.parse((cfn.ROOT / "functions" / f"{module}.py").read_text())
        imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        first = next(node for node in imports if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"))
        firsts[module] = ast.unparse(first)
    assert set(firsts.values()) == {"import chat_sessions"}, firsts


def test_outside_lambda_the_collector_is_left_alone() -> None:
    assert gc_after_import(with_handler=False) == {"paused": False, "left_paused": [], "frozen": False}


FIRST_USE = """
import json, sys, threading
from chat_sessions import idempotency
assert IDEMPOTENCY not in sys.modules
barrier = threading.Barrier(8)
mine = []

def request(i):
    context = object()  # this request's Lambda context
    idempotency.register_lambda_context(context)
    barrier.wait()
    mine.append(idempotency._config().lambda_context is context)

threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(mine))
"""


def test_concurrent_first_requests_import_idempotency_each_with_its_own_context() -> None:
    """Eight keyed requests as threads of a fresh interpreter reach Powertools Idempotency at
    once: none fails on the import, and each one's config carries its own Lambda context."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(map(str, cfn.layer_dirs(TEMPLATE))),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "CreateSessionFunction",
    }
    env = cfn.environment_for("CreateSessionFunction", env)
    probe = f"IDEMPOTENCY = {IDEMPOTENCY!r}\n{FIRST_USE}"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [True] * 8


def test_the_benchmark_floors_import_no_code_of_ours() -> None:
    """The benchmark's floor rows stand for what the frameworks cost alone: importing them must
    import none of our modules (else the floor would include what it is compared with)."""
    probe = (
        "import importlib, json, sys\n"
        "for module in sys.argv[1:]:\n"
        "    importlib.import_module(module)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('chat_sessions', 'local_stack'))))"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(cfn.ROOT), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(
        [sys.executable, "-c", probe, *FLOORS], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    assert json.loads(out.stdout) == []
