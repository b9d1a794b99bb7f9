"""The fault tier: the local stack against Amazon's DynamoDB Local, with the fault injector between
the handlers and the table, and the figures of the run (calls, faults, answers, invariant checks).

One DynamoDB Local (``local_stack.dynamodb_local``) serves the whole tier. The stack is started as
``tests/integration`` starts it (``python -m local_stack``), with ``DYNAMODB_ENDPOINT`` at DynamoDB
Local and ``DYNAMODB_FAULTS`` at rates high enough that every fault path is taken many times
(seeded). Tests talk to it over HTTP through :class:`Api`, which records every answer; what was
stored is read straight from DynamoDB Local, bypassing the injector (:mod:`tests.faults.invariants`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local_stack import dynamodb_local, model_server
from tests.faults.recorder import Recorder
from tests.integration.conftest import CLEAN_ENV
from tests.servers import ROOT

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
TABLE = "chat-sessions-faults"
MAX_ACTIVE_SESSIONS = 3
# Every kind, at rates that take each path many times in one run. Collisions and lost answers
# are what the service itself must survive, so they are high; throttling is absorbed by the
# SDK's own retries (three attempts, backoff up to seconds) unless it comes as a transaction's
# ThrottlingError reason, so it is kept lower: it mostly costs wall time.
FAULTS = (
    "seed=8,tx_conflict=0.25,write_conflict=0.3,throttle=0.08,server_error=0.06,"
    "lost=0.10,lost_retries=0.5,lost_write=0.04,unprocessed=0.4,in_progress=0.5"
)


@pytest.fixture(scope="session")
def dynamodb_local_url() -> Iterator[str]:
    """Amazon's DynamoDB Local (in memory) for the whole tier."""
    with dynamodb_local.running() as url:
        yield url


def direct_client(url: str) -> Any:
    """A client straight to a DynamoDB, no retries: what the tests read the truth with."""
    return boto3.client(
        "dynamodb", endpoint_url=url, region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )


@dataclass
class FaultStack:
    """The running stack: its URL, the injector's, DynamoDB Local's, the model server."""

    url: str
    injector_url: str
    dynamodb_url: str
    table: str
    model: model_server.ModelServer
    recorder: Recorder
    lines: list[str] = field(default_factory=list)

    def faults(self) -> dict[str, Any]:
        """The injector's counters (``GET /__faults``)."""
        with urllib.request.urlopen(self.injector_url + "/__faults", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def fault_events(self, after: int = 0) -> list[dict[str, Any]]:
        url = f"{self.injector_url}/__faults/events?after={after}"
        with urllib.request.urlopen(url, timeout=10) as response:
            events: list[dict[str, Any]] = json.loads(response.read())["events"]
            return events

    def model_calls(self) -> int:
        with self.model.lock:
            return self.model.calls


_STATE: dict[str, Any] = {}


@pytest.fixture(scope="session")
def fault_stack(dynamodb_local_url: str) -> Iterator[FaultStack]:
    """``python -m local_stack`` with DynamoDB Local behind the fault injector, and a local model
    the test process owns (so it can count model calls)."""
    model, model_url = model_server.start_in_thread()
    env = {
        **CLEAN_ENV,
        "DYNAMODB_ENDPOINT": dynamodb_local_url,
        "DYNAMODB_FAULTS": FAULTS,
        "TABLE_NAME": TABLE,
        "OPENAI_BASE_URL": model_url,
        "OPENAI_API_KEY": "local",
        "OPENAI_MODEL": model_server.MODEL_ID,
        "MAX_ACTIVE_SESSIONS": str(MAX_ACTIVE_SESSIONS),
        "LOCAL_CONCURRENCY": "6",
        "LOCAL_TTL_INTERVAL_S": "1",  # test_retention_faults: an expired session removed within seconds
        # test_async_reply_faults: a generation that dies under faults (its own requests go through
        # the injector) unlocks its chat after a 15 s lease, not the deployed 330 s.
        "GENERATION_TIMEOUT_SECONDS": "12",
        "REPLY_LEASE_MARGIN_SECONDS": "3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
    try:
        assert proc.stdout is not None
        url = injector = ""
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("DynamoDB faults"):
                injector = line.split(" through ", 1)[1].split(";", 1)[0].strip()
            if line.startswith("ready "):
                url = line[len("ready ") :].strip()
                break
        if not url:
            raise RuntimeError(f"the stack exited before it was ready:\n{''.join(lines)}\n{''.join(stderr)[-3000:]}")
        assert injector.startswith("http://127.0.0.1:"), f"no injector line in the stack's output: {lines}"
        threading.Thread(target=lambda out=proc.stdout: [None for _ in out], daemon=True).start()
        stack = FaultStack(url, injector, dynamodb_local_url, TABLE, model, Recorder(), lines)
        _STATE["stack"] = stack
        _STATE["started"] = time.monotonic()
        yield stack
        _STATE["faults"] = stack.faults()
        _STATE["elapsed"] = time.monotonic() - _STATE["started"]
        _STATE["stderr"] = stderr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        model.shutdown()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The figures of the run, printed and written to tests/faults/RESULTS.md."""
    stack: FaultStack | None = _STATE.get("stack")
    if stack is None:
        return
    from tests.faults.report import render

    outcomes = {
        name: [
            report.nodeid for report in terminalreporter.stats.get(name, []) if report.nodeid.startswith("tests/faults")
        ]
        for name in ("passed", "failed", "error")
    }
    text = render(stack, _STATE.get("faults") or {}, _STATE.get("elapsed", 0.0), outcomes)
    terminalreporter.write_sep("=", "fault tier: DynamoDB fighting back")
    terminalreporter.write_line(text)
    from tests.faults import test_fault_tier

    scenarios = {name for name in vars(test_fault_tier) if name.startswith("test_")}
    ran = {nodeid.rsplit("::", 1)[-1] for nodeids in outcomes.values() for nodeid in nodeids}
    if scenarios <= ran:  # figures from a part of the tier would mislead whoever reads the file
        RESULTS.write_text(text)
    else:
        terminalreporter.write_line(f"(not every scenario ran: {RESULTS.name} left as it was)")
