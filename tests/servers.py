"""Real servers on 127.0.0.1 for integration tests, started as child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def child(
    args: list[str], ready_prefix: str, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python <args>``, wait for a stdout line starting with ``ready_prefix`` and yield
    the rest of that line (the URL); the child is terminated on exit."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=None, text=True
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(ready_prefix):
                # Keep reading so a chatty child never blocks on a full pipe.
                threading.Thread(target=lambda out=proc.stdout: [None for _ in out], daemon=True).start()
                yield proc, line[len(ready_prefix) :].strip()
                break
        else:
            raise RuntimeError(f"{args} exited before it was ready: {''.join(seen)[-2000:]}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dynamodb_server() -> Iterator[str]:
    """moto's DynamoDB server mode (requests serialized, like DynamoDB's per-request atomicity)."""
    with child(["-m", "local_stack.dynamodb", "--port", "0"], "ready ") as (_, url):
        yield url
