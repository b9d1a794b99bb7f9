"""The gateway emulator itself: payload-v2 events, Lambda context, response translation, routing.

A function that echoes what it receives is added to (a copy of) template.yaml, and the gateway is
built from that template exactly as ``python -m local_stack`` builds it from the real one: so
these tests also show that a route added to the template is served with no other change.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from local_stack import template as cfn
from local_stack.gateway import Gateway, GatewayServer, PoolInvoker, Unauthorized, authorize, function_configs
from local_stack.token import make_token

SECRET = "gateway-test-secret"

ECHO = """
import base64, json

def lambda_handler(event, context):
    path = event["rawPath"]
    if path.endswith("/plain"):
        return "hello from a plain string"
    if path.endswith("/dict"):
        return {"plain": True}
    if path.endswith("/cookies"):
        return {"statusCode": 201, "headers": {"X-One": "1"}, "multiValueHeaders": {"X-Many": ["a", "b"]},
                "cookies": ["a=1; Path=/", "b=2"], "body": ""}
    if path.endswith("/binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(bytes(range(256))).decode()}
    if path.endswith("/boom"):
        raise RuntimeError("boom")
    if path.endswith("/malformed"):
        return {"statusCode": "teapot"}
    seen = {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"event": event, "context": seen})}
"""


def _function(handler: str, code: Path, method: str, path: str, **props: Any) -> dict[str, Any]:
    events = {"Api": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "HttpApi"}, "Method": method, "Path": path}}}
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Handler": handler, "CodeUri": str(code), "Events": events, **props},
    }


@dataclass
class Running:
    url: str
    log: io.StringIO
    gateway: Gateway


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    code = tmp_path_factory.mktemp("echo")
    (code / "echo_fn.py").write_text(ECHO)
    template = copy.deepcopy(cfn.load())
    template["Resources"]["EchoFunction"] = _function(
        "echo_fn.lambda_handler", code, "ANY", "/echo/{proxy+}", Timeout=7, MemorySize=256
    )
    template["Resources"]["EchoItemFunction"] = _function("echo_fn.lambda_handler", code, "GET", "/echo/items/{itemId}")
    routes = cfn.routes(template)
    paths = [str(p) for p in cfn.layer_dirs(template)] + sorted({str(r.code_dir) for r in routes})
    invoker = PoolInvoker(paths, concurrency=2)
    log = io.StringIO()
    gateway = Gateway(routes, function_configs(template), invoker, secret=SECRET, log=log)
    server = GatewayServer(("127.0.0.1", 0), gateway, log=log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Running(f"http://127.0.0.1:{server.server_port}", log, gateway)
    finally:
        server.shutdown()
        server.server_close()
        invoker.shutdown()


def _token(**claims: Any) -> str:
    return make_token("eve", 600, key=SECRET, **claims)


def _get(running: Running, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {_token()}", **kwargs.pop("headers", {})}
    return httpx.request(kwargs.pop("method", "GET"), running.url + path, headers=headers, timeout=60, **kwargs)


def test_request_becomes_a_payload_v2_event(echo: Running) -> None:
    token = _token(groups=["admin", "users"], n=5, flag=True)
    before = time.time()
    response = httpx.get(
        echo.url + "/echo/a/b%20c?x=1&x=2&y=&z=a%2Bb",
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Cookie", "a=1; b=2"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("User-Agent", "echo-test/1"),
        ],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    event, context = response.json()["event"], response.json()["context"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{proxy+}"
    assert event["rawPath"] == "/echo/a/b%20c"
    assert event["rawQueryString"] == "x=1&x=2&y=&z=a%2Bb"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "", "z": "a+b"}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False and "body" not in event
    rc = event["requestContext"]
    assert rc["http"] == {
        "method": "GET",
        "path": "/echo/a/b%20c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "echo-test/1",
    }
    assert rc["routeKey"] == event["routeKey"] and rc["stage"] == "$default"
    assert uuid.UUID(rc["requestId"])
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", rc["time"])
    assert before * 1000 - 1000 <= rc["timeEpoch"] <= time.time() * 1000 + 1000
    assert rc["domainName"] == "127.0.0.1"
    claims = rc["authorizer"]["jwt"]["claims"]
    assert rc["authorizer"]["jwt"]["scopes"] is None
    assert {k: claims[k] for k in ("sub", "groups", "n", "flag")} == {
        "sub": "eve",
        "groups": "[admin users]",
        "n": "5",
        "flag": "true",
    }
    assert all(isinstance(value, str) for value in claims.values())
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(":function:EchoFunction")
    assert uuid.UUID(context["aws_request_id"])
    assert 5000 < context["remaining_ms"] <= 7000


def test_bodies_text_and_binary(echo: Running) -> None:
    text = _get(echo, "/echo/x", method="POST", json={"content": "héllo"}).json()["event"]
    assert text["isBase64Encoded"] is False and json.loads(text["body"]) == {"content": "héllo"}
    raw = b"\xff\x00binary\x80"
    binary = _get(echo, "/echo/x", method="POST", content=raw).json()["event"]
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == raw


def test_the_most_specific_route_wins_and_takes_globals(echo: Running) -> None:
    body = _get(echo, "/echo/items/42").json()
    assert body["event"]["routeKey"] == "GET /echo/items/{itemId}"
    assert body["event"]["pathParameters"] == {"itemId": "42"}
    # Timeout and MemorySize come from Globals.Function in template.yaml (10 s, 512 MB).
    assert body["context"]["function_name"] == "EchoItemFunction"
    assert body["context"]["memory_limit_in_mb"] == 512
    assert 7000 < body["context"]["remaining_ms"] <= 10_000
    # POST does not match the GET-only route; the greedy ANY route takes it.
    assert _get(echo, "/echo/items/42", method="POST").json()["event"]["routeKey"] == "ANY /echo/{proxy+}"


def test_every_template_route_is_routed_to_its_function(echo: Running) -> None:
    for route in cfn.routes():
        concrete = re.sub(r"\{(\w+)\}", "01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z", route.path)
        found = echo.gateway.route_for(route.method, concrete)
        assert found is not None, route
        assert found[0].route.function == route.function


def test_responses_are_translated_back(echo: Running) -> None:
    plain = _get(echo, "/echo/plain")
    assert (plain.status_code, plain.text) == (200, "hello from a plain string")
    assert plain.headers["content-type"] == "application/json"
    assert _get(echo, "/echo/dict").json() == {"plain": True}
    cookies = _get(echo, "/echo/cookies")
    assert cookies.status_code == 201 and cookies.content == b""
    assert cookies.headers["x-one"] == "1"
    assert cookies.headers.get_list("x-many") == ["a", "b"]
    assert cookies.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    binary = _get(echo, "/echo/binary")
    assert binary.content == bytes(range(256))
    assert binary.headers["content-type"] == "application/octet-stream"


def test_function_failures_are_500_with_the_contract_body(echo: Running) -> None:
    for path, logged in [("/echo/boom", "RuntimeError: boom"), ("/echo/malformed", "malformed response")]:
        response = _get(echo, path)
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert logged in echo.log.getvalue()
    assert re.search(r"^GET /echo/boom 500 \d+ms$", echo.log.getvalue(), re.MULTILINE)


def test_oversized_bodies_are_413(echo: Running) -> None:
    response = _get(echo, "/echo/big", method="POST", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_authorizer_accepts_only_valid_hs256_tokens() -> None:
    now = int(time.time())
    good = jwt.encode({"sub": "u", "exp": now + 60, "aud": "anything"}, SECRET, algorithm="HS256")
    assert authorize(f"Bearer {good}", SECRET)["sub"] == "u"
    assert authorize(f"bearer  {good}", SECRET)["aud"] == "anything"
    cases = {
        None: "Missing Authorization",
        f"Token {good}": "must be 'Bearer <token>'",
        f"Bearer {jwt.encode({'sub': 'u', 'exp': now - 1}, SECRET, algorithm='HS256')}": "expired",
        f"Bearer {jwt.encode({'exp': now + 60}, SECRET, algorithm='HS256')}": "no subject",
        f"Bearer {jwt.encode({'sub': ' '}, SECRET, algorithm='HS256')}": "non-empty string",
        f"Bearer {jwt.encode({'sub': 'u'}, 'other-secret', algorithm='HS256')}": "signature",
        f"Bearer {jwt.encode({'sub': 'u'}, SECRET, algorithm='HS512')}": "not valid",
        "Bearer a.b.c": "not valid",
    }
    for header, message in cases.items():
        with pytest.raises(Unauthorized, match=message):
            authorize(header, SECRET)


# --- HTTP edges: h11 parses, every refusal is the contract's JSON body --------------------------


def _raw(url: str, data: bytes, read_timeout: float = 60) -> tuple[int, dict[str, Any], bool]:
    """Send raw bytes; returns the status, the JSON body and whether the server then closed."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            part = sock.recv(65536)
            assert part, f"closed without an answer: {received!r}"
            received += part
        head, body = received.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
        closed = sock.recv(65536) == b""
    return int(head.split()[1]), json.loads(body), closed


MALFORMED = {
    "request-line": b"GARBAGE\r\n\r\n",
    "http-version": b"GET /echo/x HTTP/9\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET /echo/x HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "content-length-underscore": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1_4\r\n\r\n" + b"x" * 14,
    "content-length-negative": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "content-length-plus": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "chunk-size-negative": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n",
    "chunk-size-not-hex": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "both-lengths": b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_http_is_400_with_the_contract_body(echo: Running, case: str) -> None:
    status, body, closed = _raw(echo.url, MALFORMED[case])
    assert status == 400, body
    assert body["error"]["code"] == "validation_error" and body["error"]["message"]
    assert closed  # nothing after a malformed request can be trusted to be framed right


def test_a_chunked_body_past_the_cap_is_413_before_it_ends(echo: Running) -> None:
    chunk = b"x" * (1024 * 1024)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    head = b"POST /echo/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    # 11 MB of chunks and no terminating chunk: the answer comes once the cap is passed.
    status, body, _ = _raw(echo.url, head + framed * 11)
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_chunked_bodies_and_keep_alive(echo: Running) -> None:
    token = _token()
    one = (
        b"POST /echo/one HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\n\r\n" % token.encode()
    )
    two = b"GET /echo/two HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode()
    host, port = echo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        stream = sock.makefile("rb")
        bodies = []
        for request in (one, two):
            sock.sendall(request)
            assert stream.readline().split()[1] == b"200"
            headers = {}
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            bodies.append(json.loads(stream.read(int(headers["content-length"]))))
    assert bodies[0]["event"]["body"] == "hello world"
    assert bodies[1]["event"]["rawPath"] == "/echo/two"  # the same connection served both


def test_a_short_body_gets_400_after_the_read_timeout(echo: Running) -> None:
    """A body shorter than its Content-Length does not hold the connection's thread forever."""
    server = GatewayServer(("127.0.0.1", 0), echo.gateway, log=echo.log, read_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
        status, body, closed = _raw(f"http://127.0.0.1:{server.server_port}", request)
        assert status == 400 and "did not arrive in full" in body["error"]["message"]
        assert closed
        half = b"GET /echo/x HTTP/1.1\r\nHost: x\r\n"  # headers that never end
        status, body, closed = _raw(f"http://127.0.0.1:{server.server_port}", half)
        assert status == 400 and closed
    finally:
        server.shutdown()
        server.server_close()


# --- workers: queueing, timeouts, per-function concurrency --------------------------------------

SLOW = """
import json, os, time

def lambda_handler(event, context):
    remaining = context.get_remaining_time_in_millis()
    q = event.get("queryStringParameters") or {}
    if "pidfile" in q:
        with open(q["pidfile"], "w") as f:
            f.write(str(os.getpid()))
    if "gate" in q:
        for _ in range(60_000):
            if os.path.exists(q["gate"]):
                break
            time.sleep(0.01)
    if "sleep" in q:
        time.sleep(float(q["sleep"]))
    if "after" in q:
        with open(q["after"], "w") as f:
            f.write("committed")
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid(), "remaining_ms_at_start": remaining})}
"""


@dataclass
class Pooled:
    url: str
    log: io.StringIO
    invoker: PoolInvoker


@contextmanager
def _slow_gateway(
    tmp: Path, timeout: int, concurrency: int, queue_seconds: float, max_workers: int | None = None
) -> Iterator[Pooled]:
    (tmp / "slow_fn.py").write_text(SLOW)
    (tmp / "echo_fn.py").write_text(ECHO)
    template = copy.deepcopy(cfn.load())
    template["Resources"]["SlowFunction"] = _function("slow_fn.lambda_handler", tmp, "ANY", "/slow", Timeout=timeout)
    template["Resources"]["OtherFunction"] = _function("echo_fn.lambda_handler", tmp, "GET", "/other/{proxy+}")
    routes = [r for r in cfn.routes(template) if r.function in ("SlowFunction", "OtherFunction")]
    paths = [str(p) for p in cfn.layer_dirs(template)] + [str(tmp)]
    # Scale 1: these functions' timeouts are what the tests are about (the handlers either sleep a
    # third of it or hang), not the machine's speed.
    invoker = PoolInvoker(
        paths, concurrency=concurrency, queue_seconds=queue_seconds, timeout_scale=1, max_workers=max_workers
    )
    log = io.StringIO()
    gateway = Gateway(routes, function_configs(template), invoker, secret=SECRET, log=log)
    server = GatewayServer(("127.0.0.1", 0), gateway, log=log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Pooled(f"http://127.0.0.1:{server.server_port}", log, invoker)
    finally:
        server.shutdown()
        server.server_close()
        invoker.shutdown()


def _until(condition: Callable[[], bool]) -> None:
    """Wait for a state the test cannot be told about otherwise (the pool's queue), polling."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.01)


def _call(url: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"Authorization": f"Bearer {_token()}"}, timeout=300)


def test_time_queued_for_a_worker_does_not_count_against_the_timeout(tmp_path: Path) -> None:
    with _slow_gateway(tmp_path, timeout=3, concurrency=1, queue_seconds=300) as running:
        _call(running.url, "/slow")  # the worker is warm: what follows queues, it does not start
        with ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            futures = [
                pool.submit(lambda: (_call(running.url, "/slow", sleep="1"), time.monotonic())) for _ in range(4)
            ]
            answers = [f.result() for f in futures]
    assert [r.status_code for r, _ in answers] == [200] * 4, [r.text for r, _ in answers]
    # One worker, four one-second invocations: the last one queued for three seconds or more, as
    # long as the function's timeout, and still ran with its whole timeout ahead of it.
    assert max(done for _, done in answers) - started >= 4
    assert all(r.json()["remaining_ms_at_start"] > 2000 for r, _ in answers)


def test_a_timed_out_invocation_is_stopped_before_the_answer(tmp_path: Path) -> None:
    pidfile, gate, after = tmp_path / "pid", tmp_path / "gate", tmp_path / "after"
    # 3 s: time enough for the handler to write its pid first, even on a busy machine.
    with _slow_gateway(tmp_path, timeout=3, concurrency=1, queue_seconds=300) as running:
        response = _call(running.url, "/slow", pidfile=str(pidfile), gate=str(gate), after=str(after))
        assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
        assert "timed out" in response.json()["error"]["message"]
        pid = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):  # killed and reaped before the gateway answered
            os.kill(pid, 0)
        gate.touch()  # had it lived on, it would now write `after`
        again = _call(running.url, "/slow")  # a fresh worker serves the function
        assert again.status_code == 200 and again.json()["pid"] != pid
    assert not after.exists()
    assert "did not finish within its 3 s timeout" in running.log.getvalue()


def test_a_slow_function_does_not_starve_another(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with (
        _slow_gateway(tmp_path, timeout=600, concurrency=2, queue_seconds=300) as running,
        ThreadPoolExecutor(3) as pool,
    ):
        slow = [pool.submit(_call, running.url, "/slow", gate=str(gate)) for _ in range(3)]
        state = running.invoker.pool.state
        _until(lambda: state().get("SlowFunction", {}).get("busy") == 2 and state()["SlowFunction"]["waiting"] == 1)
        other = _call(running.url, "/other/x")  # answered while every SlowFunction worker is held
        assert other.status_code == 200 and not any(f.done() for f in slow)
        gate.touch()
        assert [f.result().status_code for f in slow] == [200, 200, 200]


def test_a_function_busy_past_the_queueing_limit_is_429(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with (
        _slow_gateway(tmp_path, timeout=600, concurrency=1, queue_seconds=0.2) as running,
        ThreadPoolExecutor(1) as pool,
    ):
        held = pool.submit(_call, running.url, "/slow", gate=str(gate))
        _until(lambda: running.invoker.pool.state().get("SlowFunction", {}).get("busy") == 1)
        refused = _call(running.url, "/slow")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "1"
        gate.touch()
        assert held.result().status_code == 200


def test_workers_in_all_stay_under_local_max_workers(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gateway = _slow_gateway(tmp_path, timeout=600, concurrency=1, queue_seconds=0.5, max_workers=1)
    with gateway as running, ThreadPoolExecutor(1) as pool:
        state = running.invoker.pool.state
        idle_pid = _call(running.url, "/slow").json()["pid"]
        assert _call(running.url, "/other/x").status_code == 200  # the idle SlowFunction worker made room
        assert state()["SlowFunction"]["idle"] == 0 and state()["OtherFunction"]["idle"] == 1
        with pytest.raises(ProcessLookupError):
            os.kill(idle_pid, 0)
        held = pool.submit(_call, running.url, "/slow", gate=str(gate))  # replaces the idle OtherFunction worker
        _until(lambda: state()["SlowFunction"]["busy"] == 1)
        refused = _call(running.url, "/other/y")  # no idle worker anywhere to replace: it waits, then 429
        assert refused.status_code == 429 and "LOCAL_MAX_WORKERS" in running.log.getvalue()
        gate.touch()
        assert held.result().status_code == 200


def test_expect_100_continue_is_answered_before_the_body(echo: Running) -> None:
    """curl sends ``Expect: 100-continue`` before a larger body and waits for the interim answer."""
    head = b"POST /echo/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 5\r\n" % _token().encode()
    host, port = echo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().split()[1] == b"100"
        assert stream.readline() == b"\r\n"
        sock.sendall(b"hello")
        assert stream.readline().split()[1] == b"200"
        headers = {}
        while (line := stream.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert json.loads(stream.read(int(headers["content-length"])))["event"]["body"] == "hello"
