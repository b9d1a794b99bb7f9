"""A small, deterministic, clearly labelled OpenAI-compatible model for the local stack.

It answers ``POST /v1/chat/completions`` with a reply that names itself as the local model and
echoes what it was asked, and reports token usage (four characters a token), so the whole API
can be tried and tested with no model provider. ``GET /v1/models`` lists it and
``GET /v1/stats`` counts the completions served (tests use it to prove "no second model call").
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "local-echo-1"
LABEL = "[local model]"


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4) + 4


def reply_for(messages: list[dict[str, Any]]) -> str:
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), None)
    preview = str(last_user)[:200]
    parts = [f"{LABEL} You said: {preview!r}.", f"I was shown {len(messages)} message(s)."]
    if system:
        parts.append(f"System prompt: {str(system)[:80]!r}.")
    return " ".join(parts)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "local"}]})
        elif self.path.rstrip("/").endswith("/stats"):
            self._send(200, {"calls": self.server.calls})
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            messages = request["messages"]
            assert isinstance(messages, list) and messages
        except (ValueError, KeyError, AssertionError):
            self._send(400, {"error": {"message": "messages is required", "type": "invalid_request_error"}})
            return
        with self.server.lock:
            self.server.calls += 1
            self.server.requests.append(request)
            del self.server.requests[:-50]
        content = reply_for(messages)
        prompt = sum(_tokens(str(m.get("content", ""))) for m in messages)
        completion = _tokens(content)
        self._send(
            200,
            {
                "id": f"chatcmpl-local-{self.server.calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(request.get("model") or MODEL_ID),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[ModelServer, str]:
    """Serve in a daemon thread; returns the server and its base URL (ending in ``/v1``)."""
    server = ModelServer((host, port))
    threading.Thread(target=server.serve_forever, name="local-model", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/v1"


if __name__ == "__main__":
    srv, url = start_in_thread()
    print(f"ready {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.shutdown()
