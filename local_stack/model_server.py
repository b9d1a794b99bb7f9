"""A small, deterministic, clearly labelled OpenAI-compatible model for the local stack.

It answers ``POST /v1/chat/completions`` with a reply that names itself as the local model and
echoes what it was asked, and reports token usage (four characters a token), so the whole API
can be tried and tested with no model provider. ``GET /v1/models`` lists it and
``GET /v1/stats`` counts the completions served (tests use it to prove "no second model call").

Asked with ``stream=True`` it streams the same reply as server-sent events, one word a chunk,
waiting ``LOCAL_MODEL_DELAY_MS`` (default 0) between words so that a reply can be watched as it
grows; with ``stream_options.include_usage`` a last chunk carries the usage, as OpenAI's does.
A question containing ``[fail after N words]`` makes a streamed reply break off (the connection
closed mid-stream, no final chunk) after ``N`` words: a model failing midway, for tests; one
containing ``[words N]`` gets ``N`` more words in its reply (a long reply, to watch or cancel).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "local-echo-1"
LABEL = "[local model]"
FAIL_AFTER = re.compile(r"\[fail after (\d+) words?\]")
MORE_WORDS = re.compile(r"\[words (\d{1,5})\]")


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4) + 4


def reply_for(messages: list[dict[str, Any]]) -> str:
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), None)
    preview = str(last_user)[:200]
    parts = [f"{LABEL} You said: {preview!r}.", f"I was shown {len(messages)} message(s)."]
    if system:
        parts.append(f"System prompt: {str(system)[:80]!r}.")
    more = MORE_WORDS.search(str(last_user))
    if more:
        parts.append(" ".join(f"word{i}" for i in range(1, int(more.group(1)) + 1)))
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
    # Keep-alive: a worker's openai client (one per worker, kept across invocations) reuses its
    # connection instead of a new TCP connection, and a new server thread, per model call.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # also ends the connection after this answer
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
            # Its body is not read, so the connection cannot carry another request.
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}}, close=True)
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            messages = request["messages"]
            assert isinstance(messages, list) and messages
        except (ValueError, KeyError, AssertionError):
            self._send(400, {"error": {"message": "messages is required", "type": "invalid_request_error"}}, close=True)
            return
        with self.server.lock:
            self.server.calls += 1
            self.server.requests.append(request)
            del self.server.requests[:-50]
        content = reply_for(messages)
        prompt = sum(_tokens(str(m.get("content", ""))) for m in messages)
        completion = _tokens(content)
        if request.get("stream") is True:
            self._stream(request, messages, content, prompt, completion)
            return
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

    def _stream(
        self, request: dict[str, Any], messages: list[dict[str, Any]], content: str, prompt: int, completion: int
    ) -> None:
        """The reply as server-sent events, a word a chunk (the space before a word goes with it,
        so the chunks put together are the reply), then the finish and, if asked, the usage."""
        delay = max(0.0, float(os.environ.get("LOCAL_MODEL_DELAY_MS", "").strip() or 0) / 1000)
        last_user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        failing = FAIL_AFTER.search(last_user)
        fail_after = int(failing.group(1)) if failing else None
        model = str(request.get("model") or MODEL_ID)
        base: dict[str, Any] = {"id": f"chatcmpl-local-{self.server.calls}", "object": "chat.completion.chunk"}
        base.update(model=model, created=int(time.time()))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(chunk: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps({**base, **chunk}).encode() + b"\n\n")
            self.wfile.flush()

        try:
            event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            for n, word in enumerate(re.findall(r"\s*\S+", content)):
                if fail_after is not None and n >= fail_after:
                    return  # the connection closes mid-stream: the client sees a broken stream
                if n and delay:
                    time.sleep(delay)
                event({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
            event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (request.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
                event({"choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away (a cancelled generation closes its stream)


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
