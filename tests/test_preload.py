"""The workers' fork server (``local_stack/_preload.py``) imports the service's modules that read
no environment, and makes nothing that a worker's own environment should decide: no settings,
clients or table, no Logger, Tracer or Metrics (``chat_sessions.observability``), no model."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import ROOT

PROBE = """
import json, sys
import local_stack._preload as preload
import boto3

ours = sorted(m for m in sys.modules if m.startswith("chat_sessions"))
made = sorted(
    f"{name}.{attr}"
    for name in ours
    for attr, value in vars(sys.modules[name]).items()
    if hasattr(value, "cache_info") and value.cache_info().currsize
)
print(json.dumps({
    "listed": list(preload.SERVICE_MODULES),
    "ours": ours,
    "made": made,
    "credentials": boto3.DEFAULT_SESSION._session._credentials is not None,
}))
"""


def as_fork_server(probe: str) -> str:
    """Run ``probe`` in a fresh interpreter as the gateway starts its fork server: the repository
    on the path, the layer not yet (the preload adds it). Its stdout; it must exit 0."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_fork_server_imports_the_service_but_makes_nothing_a_worker_decides() -> None:
    found = json.loads(as_fork_server(PROBE))
    assert set(found["listed"]) <= set(found["ours"])  # every listed module is imported
    assert "chat_sessions.observability" not in found["ours"]  # reads the function's settings
    assert {"chat_sessions.api", "chat_sessions.llm"}.isdisjoint(found["ours"])
    assert found["made"] == []  # no settings, store, client or model cached
    assert found["credentials"] is False  # botocore's descriptions read, no credentials resolved


def test_a_service_module_that_fails_to_import_leaves_the_service_to_the_workers() -> None:
    """Code being edited: the fork server imports none of the service, and each worker imports it
    itself and reports the error as its cold start's."""
    probe = """
import sys
import local_stack._preload as preload
assert "chat_sessions.items" in sys.modules
assert preload.import_service_modules(("chat_sessions.items", "chat_sessions.no_such_module")) is False
assert not [m for m in sys.modules if m.startswith("chat_sessions")], sorted(sys.modules)
assert preload.import_service_modules(("chat_sessions.items",)) is True
"""
    as_fork_server(probe)
