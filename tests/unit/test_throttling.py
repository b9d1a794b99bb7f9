"""DynamoDB throttling that outlasts the client's retries answers 429, not 500."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support import invoke, reset_caches


class _Throttling(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_sustained_throttling_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("DYNAMODB_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        reset_caches()
        result = invoke("get_session", session="01" + "A" * 24)
        assert result.status == 429
        assert result.body["error"]["code"] == "rate_limited"
        assert result.headers.get("Retry-After") == "1"
        assert _Throttling.calls > 1  # the client's own retries came first
    finally:
        server.shutdown()
        server.server_close()
        reset_caches()
