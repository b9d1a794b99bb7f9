"""The local model server keeps connections alive: the workers' openai clients (one per worker,
kept across invocations) send every model call on one connection, and a request whose body the
server did not read ends its connection rather than leave the body to be read as the next request."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from local_stack import model_server


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    srv, url = model_server.start_in_thread()
    split = urlsplit(url)
    yield str(split.hostname), int(split.port or 0)
    srv.shutdown()
    srv.server_close()


def _ask(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, dict[str, object], str | None]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read()), response.getheader("Connection")


def test_completions_share_one_connection(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    body = json.dumps({"model": model_server.MODEL_ID, "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, first, _ = _ask(conn, "/v1/chat/completions", body)
    sock = conn.sock
    assert status == 200 and sock is not None
    status, second, _ = _ask(conn, "/v1/chat/completions", body)
    assert status == 200 and conn.sock is sock  # the same TCP connection answered both
    assert first["choices"] == second["choices"]
    conn.close()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [("/v1/nowhere", b'{"messages": [1]}', 404), ("/v1/chat/completions", b"not json", 400)],
    ids=["unknown-path", "bad-body"],
)
def test_a_refused_request_closes_its_connection(server: tuple[str, int], path: str, body: bytes, status: int) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    answered, payload, connection = _ask(conn, path, body)
    assert answered == status and "error" in payload
    assert connection == "close"
    conn.close()
