"""A stand-in for the Lambda service's Invoke API on 127.0.0.1, for in-process tests: it
records each asynchronous invocation (``InvocationType=Event``) and answers ``202`` as Lambda
does, so a test runs the invoked handler itself, with the recorded event, when it chooses
(twice, to act out a duplicate delivery). The functions reach it through
``AWS_ENDPOINT_URL_LAMBDA``, as they reach the local stack's Invoke API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LambdaService(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.invocations: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def events(self, function: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for name, _, event in self.invocations if name == function]


class _Handler(BaseHTTPRequestHandler):
    server: LambdaService

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        parts = self.path.split("/")  # /2015-03-31/functions/<name>/invocations
        length = int(self.headers.get("Content-Length", "0"))
        event = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.invocations.append((parts[3], self.headers.get("X-Amz-Invocation-Type", ""), event))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def lambda_service() -> Iterator[LambdaService]:
    server = LambdaService()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
