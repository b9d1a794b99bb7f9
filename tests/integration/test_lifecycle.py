"""Starting and stopping ``python -m local_stack``: clean exits on SIGTERM and Ctrl-C, no strays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx
import pytest

from tests.integration.conftest import CLEAN_ENV, client, new_user, ok
from tests.servers import ROOT


@contextmanager
def started(**env: str) -> Iterator[tuple[subprocess.Popen[str], str | None, IO[str]]]:
    """The stack with its stderr in a file; yields (process, URL or None if it exited, stderr)."""
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local_stack"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **CLEAN_ENV, **env},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives `make run`
        )
        try:
            assert proc.stdout is not None
            url = next((line.split()[1] for line in proc.stdout if line.startswith("ready ")), None)
            yield proc, url, stderr
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _exercise(url: str) -> None:
    """A few concurrent requests, so several worker processes exist when the stop comes."""
    user = new_user()
    with client(url, user) as http:
        sid = ok(http.post("/sessions", json={"name": "before stop"}), 201)["sessionId"]
        ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)
        ok(http.post(f"/sessions/{sid}/messages", json={"content": "hi"}), 201)


def _read(stderr: IO[str]) -> str:
    stderr.seek(0)
    return stderr.read()


def test_sigterm_stops_cleanly() -> None:
    with started() as (proc, url, stderr):
        assert url is not None, _read(stderr)
        _exercise(url)
        started_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started_at < 5
        log = _read(stderr)
        assert "Traceback" not in log, log
        assert "POST /sessions 201" in log  # one line per request
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:  # workers go with it
            time.sleep(0.05)
        assert not _group_alive(proc.pid)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/openapi.json", timeout=2)


def test_ctrl_c_stops_the_whole_process_group_cleanly() -> None:
    with started() as (proc, url, stderr):
        assert url is not None, _read(stderr)
        _exercise(url)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert proc.wait(timeout=10) == 0
        log = _read(stderr)
        assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc.pid)


def test_a_busy_port_is_a_clear_error_before_anything_starts(stack: str) -> None:
    """The port is taken first: nothing is started (no DynamoDB, table, model or fork server,
    each of which says so on stdout) only to be stopped again."""
    port = stack.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **CLEAN_ENV, "PORT": port},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
