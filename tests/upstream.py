"""A scripted OpenAI-compatible upstream on 127.0.0.1 for tests of the model path.

Tests queue the responses it gives (status, headers, body, delay) and read back every request
it received, so they can assert the exact messages the real ``openai`` client sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str = "a reply"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    raw: bytes | None = None
    """The whole body, sent as is instead of a completion built from the fields above (a reply
    that is not JSON, or JSON of the wrong shape)."""
    trickle: float = 0.0
    """Seconds between single bytes of the response, status line included: a server that is
    never silent for long enough to trip a per-read timeout."""
    trickle_body_only: bool = False
    break_after: int | None = None
    """Streamed (``stream=True``): the connection closes after this many words, mid-reply."""


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[Reply] = []
        self.default = Reply()
        self.received: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.received)

    def next_reply(self, request: dict[str, Any], authorization: str) -> Reply:
        with self.lock:
            self.received.append(request)
            self.authorizations.append(authorization)
            return self.script.pop(0) if self.script else self.default


class _Handler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        reply = self.server.next_reply(request, self.headers.get("Authorization", ""))
        if reply.delay:
            time.sleep(reply.delay)  # the upstream being slow is what is under test
        if reply.raw is not None:
            self._send(reply, reply.raw)
            return
        if reply.status == 200 and request.get("stream") is True:
            self._stream(reply, request)
            return
        if reply.status == 200:
            body: dict[str, Any] = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": request.get("model", "test-model"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.content}}
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            }
        else:
            body = {"error": {"message": "scripted failure", "type": "server_error"}}
        self._send(reply, json.dumps(body).encode())

    def _stream(self, reply: Reply, request: dict[str, Any]) -> None:
        """The reply as server-sent events, a word a chunk, then the usage if asked for."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0}
        base["model"] = request.get("model", "test-model")
        words = reply.content.split(" ")
        chunks: list[dict[str, Any]] = [
            {"choices": [{"index": 0, "delta": {"content": (" " if i else "") + w}, "finish_reason": None}]}
            for i, w in enumerate(words)
        ]
        if reply.break_after is not None:
            chunks = chunks[: reply.break_after]
        else:
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (request.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
                usage["total_tokens"] = reply.prompt_tokens + reply.completion_tokens
                chunks.append({"choices": [], "usage": usage})
        try:
            for chunk in chunks:
                self.wfile.write(b"data: " + json.dumps({**base, **chunk}).encode() + b"\n\n")
            if reply.break_after is None:
                self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, reply: Reply, data: bytes) -> None:
        head = [f"{self.protocol_version} {reply.status} Scripted"]
        for name, value in {"Content-Type": "application/json", **reply.headers}.items():
            head.append(f"{name}: {value}")
        head.append(f"Content-Length: {len(data)}")
        prefix = ("\r\n".join(head) + "\r\n\r\n").encode()
        try:
            if not reply.trickle:
                self.wfile.write(prefix + data)
                return
            stream = prefix + data
            if reply.trickle_body_only:
                self.wfile.write(prefix)
                self.wfile.flush()
                stream = data
            for i in range(len(stream)):
                self.wfile.write(stream[i : i + 1])
                self.wfile.flush()
                # The slowness is the behaviour under test; a stopping server ends it at once.
                if self.server.stopping.wait(reply.trickle):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


@contextmanager
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
