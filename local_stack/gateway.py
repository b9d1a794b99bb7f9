"""An API Gateway HTTP API emulator: the local stack's front door.

Why it exists: ``make run`` must serve the deployed API on one machine, with no AWS account and
no Docker. This module plays API Gateway's part, faithfully enough that the handlers cannot
tell the difference: it reads the routes from ``template.yaml`` (a route added there is served
with no other change), verifies the bearer token like the HTTP API's JWT authorizer, turns each
HTTP request into a real payload-v2 event, invokes the route's Lambda handler with a context
object in a Lambda-like worker process (``local_stack.workers``) and translates the handler's
response back to HTTP. It also serves the OpenAPI document and Swagger UI, which need no token.

``python -m local_stack`` runs it with an embedded DynamoDB and a local model (see ``main``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from socketserver import BaseRequestHandler, ThreadingTCPServer
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import jwt
from jwt.warnings import InsecureKeyLengthWarning

from local_stack import template as cfn
from local_stack.template import Route
from local_stack.websocket import WebSocketHub
from local_stack.workers import WorkerBusy

if TYPE_CHECKING:
    from local_stack.faults import FaultSpec

DEFAULT_PORT = 3000
DEFAULT_SECRET = "local-dev-secret"  # noqa: S105 - the contract's documented local-only secret
DEFAULT_TABLE = "chat-sessions-local"
HOST = "127.0.0.1"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's request payload limit
LAMBDA_DEFAULT_TIMEOUT_S = 3  # Lambda's defaults when neither Globals nor the function sets them
LAMBDA_DEFAULT_MEMORY_MB = 128
ACCOUNT_ID = "000000000000"

# The contract fixes the default secret (16 bytes); PyJWT warns about HMAC keys under 32 bytes.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

_SERVICE_SETTINGS = (
    "MAX_ACTIVE_SESSIONS",
    "MONTHLY_TOKEN_BUDGET",
    "RETENTION_DAYS",
    "ARCHIVED_RETENTION_DAYS",
    "CONTEXT_TOKEN_BUDGET",
    "CONTEXT_MAX_MESSAGES",
    "OPENAI_MODEL",
    "MODEL_TIMEOUT_SECONDS",
    "MODEL_MAX_RETRIES",
    "MAX_COMPLETION_TOKENS",
    "IDEMPOTENCY_TTL_SECONDS",
    "MAX_BODY_BYTES",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PARAM = re.compile(r"\{([^}/]+?)(\+?)\}")
_SWAGGER_ASSETS = {
    "/docs/swagger-ui-bundle.min.js": "application/javascript; charset=utf-8",
    "/docs/swagger-ui.min.css": "text/css; charset=utf-8",
}


# --- HTTP values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # the request target as received: path and query, percent-encoded
    headers: list[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    server_port: int = DEFAULT_PORT


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def json_response(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    data = json.dumps(body).encode()
    return HttpResponse(status, [("Content-Type", "application/json"), *(headers or [])], data)


def error_response(status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """The contract's error body, for what the gateway itself refuses."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


# --- template -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    timeout_s: float
    memory_mb: int


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # an intrinsic (``!Ref``) the emulator cannot resolve
        return default


def function_configs(template: dict[str, Any]) -> dict[str, FunctionConfig]:
    """Timeout and memory of every function: its own setting, else ``Globals.Function``'s."""
    defaults = template.get("Globals", {}).get("Function", {})
    timeout = _number(defaults.get("Timeout"), LAMBDA_DEFAULT_TIMEOUT_S)
    memory = _number(defaults.get("MemorySize"), LAMBDA_DEFAULT_MEMORY_MB)
    return {
        name: FunctionConfig(
            name,
            _number(_parameter_value(name, res, "Timeout"), timeout),
            int(_number(res.get("Properties", {}).get("MemorySize"), memory)),
        )
        for name, res in cfn.functions(template).items()
    }


def _parameter_value(name: str, resource: dict[str, Any], prop: str) -> Any:
    """A function property; one given by a parameter (``!Ref GenerationTimeoutSeconds``) takes
    the value the function's local environment gives the variable set from that same parameter
    (so ``GENERATION_TIMEOUT_SECONDS=20 make run`` sets the generating function's timeout too),
    else the parameter's default."""
    value = resource.get("Properties", {}).get(prop)
    if not (isinstance(value, dict) and set(value) == {"Ref"}):
        return value
    declared = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
    variable = next((k for k, v in declared.items() if v == value), None)
    environment = cfn.environment_for(name)
    if variable is not None and variable in environment:
        return environment[variable]
    return cfn.template_parameters().get(str(value["Ref"]), {}).get("Default")


@dataclass(frozen=True)
class RouteMatcher:
    route: Route
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    rank: tuple[int, int, int]  # lower is more specific: greedy params, params, ANY method

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in zip(self.names, found.groups(), strict=True)}


def compile_route(route: Route) -> RouteMatcher:
    """``/sessions/{sessionId}`` (and greedy ``{proxy+}``) as a regular expression."""
    parts: list[str] = []
    names: list[str] = []
    greedy = 0
    last = 0
    for param in _PARAM.finditer(route.path):
        parts.append(re.escape(route.path[last : param.start()]))
        names.append(param.group(1))
        greedy += bool(param.group(2))
        parts.append("(.+)" if param.group(2) else "([^/]+)")
        last = param.end()
    parts.append(re.escape(route.path[last:]))
    rank = (greedy, len(names), int(route.method == "ANY"))
    return RouteMatcher(route, re.compile("".join(parts)), tuple(names), rank)


# --- the JWT authorizer -----------------------------------------------------------------------


class Unauthorized(Exception):
    pass


def claim_text(value: Any) -> str:
    """A claim as API Gateway passes it to the function: always a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def authorize(authorization: str | None, secret: str) -> dict[str, str]:
    """Verify ``Authorization: Bearer <jwt>`` (HS256, ``sub`` required, ``exp`` honoured when
    present); returns the claims as strings or raises ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("Missing Authorization header (expected 'Bearer <token>').")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub"], "verify_aud": False}, leeway=0
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The token has expired.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized("The token has no subject (sub claim).") from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthorized("The token's signature is not valid.") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"The token is not valid: {exc}.") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthorized("The token's subject (sub claim) must be a non-empty string.")
    return {name: claim_text(value) for name, value in claims.items()}


# --- payload v2 -------------------------------------------------------------------------------


def _request_time(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def build_event(
    request: HttpRequest,
    route: Route,
    path_parameters: dict[str, str],
    claims: dict[str, str] | None,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway payload-format-2.0 event for one request."""
    now = time.time() if now is None else now
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers.setdefault("x-forwarded-port", str(request.server_port))
    headers.setdefault("x-forwarded-proto", "http")
    domain = headers.get("host", f"{HOST}:{request.server_port}").rsplit(":", 1)[0] or HOST
    route_key = f"{route.method} {route.path}"
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if split.query:
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": _request_time(now),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event["requestContext"] = context
    if request.body:
        try:
            event["body"] = request.body.decode("utf-8")
            event["isBase64Encoded"] = False
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


class BadLambdaResponse(Exception):
    pass


def translate_response(result: Any) -> HttpResponse:
    """A handler's return value as API Gateway (payload 2.0) turns it into an HTTP response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # No statusCode: API Gateway answers 200 with the returned value as a JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], text.encode())
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int | str) or not str(status).isdigit():
        raise BadLambdaResponse(f"statusCode {status!r} is not an integer")
    if not 100 <= int(status) <= 599:
        raise BadLambdaResponse(f"statusCode {status} is out of range")
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(multi, dict):
        raise BadLambdaResponse("multiValueHeaders must be an object")
    single = result.get("headers") or {}
    if not isinstance(single, dict):
        raise BadLambdaResponse("headers must be an object")
    multi_names = {str(name).lower() for name in multi}
    for name, value in single.items():
        if str(name).lower() not in multi_names:
            headers.append((str(name), str(value)))
    for name, values in multi.items():
        headers.extend((str(name), str(value)) for value in (values if isinstance(values, list) else [values]))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadLambdaResponse("cookies must be a list")
    headers.extend(("Set-Cookie", str(cookie)) for cookie in cookies)
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except ValueError as exc:
            raise BadLambdaResponse("isBase64Encoded is true but the body is not base64") from exc
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode()
    headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
    return HttpResponse(int(status), headers, body)


# --- invoking functions -----------------------------------------------------------------------


class Invoker(Protocol):
    def __call__(self, route: Route, function: FunctionConfig, event: dict[str, Any]) -> Any: ...


class PoolInvoker:
    """Invokes handlers in Lambda-like worker processes (``local_stack.workers``): per-function
    concurrency, a bounded wait for a free worker that does not count against the function's
    timeout, and a timed-out invocation stopped (its worker killed) before the gateway answers."""

    def __init__(self, import_paths: list[str], concurrency: int | None = None, **options: Any) -> None:
        from local_stack.workers import WorkerPool

        self.pool = WorkerPool(import_paths, concurrency, **options)

    def __call__(self, route: Route, function: FunctionConfig, event: dict[str, Any]) -> Any:
        return self.pool.invoke(
            route.module, route.handler, function.name, function.timeout_s, event, function.memory_mb
        )

    def shutdown(self) -> None:
        self.pool.shutdown()


# --- the gateway ------------------------------------------------------------------------------


class Gateway:
    """Routes one HTTP request: public docs, else authorizer, then the route's function."""

    lambda_api: Callable[[HttpRequest], HttpResponse | None] | None = None
    """The local Lambda Invoke API (``local_stack.lambda_invoke``), when the stack serves it."""

    def __init__(
        self,
        routes: list[Route],
        functions: dict[str, FunctionConfig],
        invoke: Invoker,
        secret: str = DEFAULT_SECRET,
        openapi_json: Callable[[], str] | None = None,
        log: TextIO | None = None,
        local_services: list[Callable[[HttpRequest], HttpResponse | None]] | None = None,
    ) -> None:
        self.matchers = sorted((compile_route(route) for route in routes), key=lambda m: m.rank)
        # The local stack's own endpoints (/local/stream, the EventBridge receiver...), asked in
        # order before routing; None from one means "not mine".
        self.local_services = list(local_services or [])
        self.functions = functions
        self.invoke = invoke
        self.secret = secret
        # The WebSocket API (/ws and the @connections management API), when the template has one.
        self.websockets: WebSocketHub | None = None
        self._openapi_json = openapi_json
        self._openapi_text: str | None = None
        self._openapi_lock = threading.Lock()
        self.log = log or sys.stderr

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._handle(request)
        except Exception:  # the emulator's own bug: answer like API Gateway, never hang up
            self._trace(f"gateway error on {request.method} {request.target}")
            return error_response(500, "internal_error", "The local gateway failed; see its log.")

    def _handle(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.target).path or "/"
        if self.lambda_api is not None and (invoked := self.lambda_api(request)) is not None:
            return invoked
        from local_stack import console  # the web console at / and POST /local/token (local only)

        if self.websockets is not None and (managed := self.websockets.manage(request)) is not None:
            return managed
        if (local := console.serve(request, self.secret)) is not None:
            return local
        for service in self.local_services:
            if (answer := service(request)) is not None:
                return answer
        if request.method in ("GET", "HEAD"):
            public = self._public(path, urlsplit(request.target).query)
            if public is not None:
                return public
        found = self.route_for(request.method, path)
        if found is None:
            return error_response(404, "not_found", f"No route for {request.method} {path}.")
        matcher, parameters = found
        try:
            claims = authorize(self._header(request, "authorization"), self.secret)
        except Unauthorized as exc:
            return error_response(401, "unauthorized", str(exc), [("WWW-Authenticate", "Bearer")])
        event = build_event(request, matcher.route, parameters, claims)
        function = self.functions.get(matcher.route.function) or FunctionConfig(
            matcher.route.function, LAMBDA_DEFAULT_TIMEOUT_S, LAMBDA_DEFAULT_MEMORY_MB
        )
        try:
            result = self.invoke(matcher.route, function, event)
        except WorkerBusy as exc:  # Lambda's throttling (concurrency limit): API Gateway's 429
            self._note(f"{function.name} throttled: {exc}")
            return error_response(
                429, "rate_limited", f"{function.name} is busy; retry shortly.", [("Retry-After", "1")]
            )
        except TimeoutError as exc:  # the worker was killed first: nothing of it commits later
            self._note(str(exc) or f"{function.name} did not answer within its {function.timeout_s:g} s timeout")
            return error_response(500, "internal_error", f"{function.name} timed out.")
        except Exception:
            self._trace(f"{function.name} raised")
            return error_response(500, "internal_error", f"{function.name} failed; see the local stack's log.")
        try:
            return translate_response(result)
        except BadLambdaResponse as exc:
            self._note(f"{function.name} returned a malformed response: {exc}")
            return error_response(500, "internal_error", f"{function.name} returned a malformed response.")

    def route_for(self, method: str, path: str) -> tuple[RouteMatcher, dict[str, str]] | None:
        for matcher in self.matchers:
            if matcher.route.method not in (method, "ANY"):
                continue
            parameters = matcher.match(path)
            if parameters is not None:
                return matcher, parameters
        return None

    # public documents ---------------------------------------------------------------------

    def openapi_text(self) -> str:
        with self._openapi_lock:
            if self._openapi_text is None:
                if self._openapi_json is None:
                    from local_stack.openapi import document_json

                    self._openapi_json = document_json
                self._openapi_text = self._openapi_json()
            return self._openapi_text

    def _public(self, path: str, query: str) -> HttpResponse | None:
        if path == "/openapi.json" or (path in ("/docs", "/docs/") and "format=json" in query):
            return HttpResponse(200, [("Content-Type", "application/json")], self.openapi_text().encode())
        if path in ("/docs", "/docs/"):
            from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

            html = generate_swagger_html(
                spec=self.openapi_text(),
                swagger_js="/docs/swagger-ui-bundle.min.js",
                swagger_css="/docs/swagger-ui.min.css",
                swagger_base_url="/docs",
                oauth2_config=None,
                persist_authorization=True,
            )
            return HttpResponse(200, [("Content-Type", "text/html; charset=utf-8")], html.encode())
        if path in _SWAGGER_ASSETS:
            return HttpResponse(200, [("Content-Type", _SWAGGER_ASSETS[path])], swagger_asset(path).read_bytes())
        return None

    # logging ------------------------------------------------------------------------------

    @staticmethod
    def _header(request: HttpRequest, name: str) -> str | None:
        values = [value for key, value in request.headers if key.lower() == name]
        return ",".join(values) if values else None

    def _note(self, line: str) -> None:
        print(line, file=self.log, flush=True)

    def _trace(self, line: str) -> None:
        self._note(line + ":\n" + traceback.format_exc().rstrip())


def swagger_asset(path: str) -> Path:
    """Swagger UI's files as Powertools ships them (no CDN needed)."""
    import aws_lambda_powertools.event_handler.openapi.swagger_ui as swagger_ui

    return Path(swagger_ui.__file__).parent / path.rsplit("/", 1)[1]


# --- the HTTP server --------------------------------------------------------------------------

READ_TIMEOUT_S = 30.0  # a request must arrive whole within this; an idle keep-alive connection ends
MAX_HEADER_BYTES = 64 * 1024


class _Refused(Exception):
    """A request the server answers itself, before any routing, and then closes the connection."""

    def __init__(self, response: HttpResponse, method: str = "-", target: str = "-") -> None:
        super().__init__(response.status)
        self.response = response
        self.method = method
        self.target = target


class _Closed(Exception):
    """The client went away, or sent nothing more within the read timeout between requests."""


class GatewayServer(ThreadingTCPServer):
    """One thread per connection, so concurrent requests race as they do when deployed.

    HTTP/1.1 is parsed by h11 (a small, strict, well-kept parser with no dependencies of its own;
    httpx already depends on it): the request line, header syntax, ``Content-Length`` (digits only)
    and chunk sizes (hex only) are checked there, and whatever it refuses is answered ``400`` with
    the contract's error body. A request must arrive whole within ``read_timeout`` seconds (a
    promised body that never comes cannot hold a thread), and a body over 10 MB is refused with
    ``413`` as soon as it is announced or, chunked, as soon as it passes the limit."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway,
        log: TextIO | None = None,
        read_timeout: float = READ_TIMEOUT_S,
        listening: socket.socket | None = None,
    ) -> None:
        """``listening``: a socket already bound and listening (:func:`listen`), which the server
        takes over, else it binds ``address`` itself."""
        self.gateway = gateway
        self.log = log or sys.stderr
        self.read_timeout = read_timeout
        super().__init__(address, _Connection, bind_and_activate=listening is None)
        if listening is not None:
            self.socket.close()
            self.socket = listening
            self.server_address = listening.getsockname()
        self.server_port = int(self.server_address[1])


def listen(port: int) -> socket.socket:
    """The stack's port, bound and listening (``OSError`` if it cannot be): taken before anything
    else starts, so a busy port is reported at once, not after DynamoDB Local and the workers'
    fork server have started (a second or two of CPU) only to be stopped again. Connections made
    while the stack starts wait in the backlog until it serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as GatewayServer binds
        sock.bind((HOST, port))
        sock.listen(GatewayServer.request_queue_size)
    except OSError:
        sock.close()
        raise
    return sock


def _status_line(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Connection(BaseRequestHandler):
    server: GatewayServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            started = time.perf_counter()
            try:
                request = self._read_request(sock, conn)
            except _Closed:
                return
            except _Refused as refused:
                self._send(sock, conn, refused.response, refused.method, started, refused.target, close=True)
                self._linger(sock)
                return
            websockets = self.server.gateway.websockets
            if websockets is not None and websockets.is_upgrade(request):
                websockets.serve(self.server.gateway, sock, conn, request)  # until the WebSocket closes
                return
            response = self.server.gateway.handle(request)
            if not self._send(sock, conn, response, request.method, started, request.target):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            try:
                conn.start_next_cycle()
            except h11.ProtocolError:
                return

    def _next_event(self, sock: socket.socket, conn: h11.Connection, deadline: float) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            conn.receive_data(sock.recv(65536))

    def _read_request(self, sock: socket.socket, conn: h11.Connection) -> HttpRequest:
        deadline = time.monotonic() + self.server.read_timeout
        try:
            event = self._next_event(sock, conn, deadline)
        except TimeoutError as exc:
            if conn.trailing_data[0]:  # part of a request line or of the headers, then nothing
                raise _Refused(self._incomplete()) from exc
            raise _Closed from exc  # idle between requests: just close
        except OSError as exc:  # reset by the client
            raise _Closed from exc
        except h11.RemoteProtocolError as exc:
            raise _Refused(error_response(400, "validation_error", f"Malformed HTTP request: {exc}.")) from exc
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        assert isinstance(event, h11.Request)
        method, target = event.method.decode("ascii"), event.target.decode("latin-1")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers.raw_items()]
        length = next((value for name, value in headers if name.lower() == "content-length"), None)
        if length is not None and any(name.lower() == "transfer-encoding" for name, _ in headers):
            # Both framings at once is how requests are smuggled past a proxy (RFC 9112, 6.1).
            message = "A request may not carry both Content-Length and Transfer-Encoding."
            raise _Refused(error_response(400, "validation_error", message), method, target)
        if length is not None and int(length) > MAX_PAYLOAD_BYTES:  # h11 checked it is digits only
            raise _Refused(_too_large(), method, target)
        if conn.they_are_waiting_for_100_continue:  # curl waits for it before a larger body
            with contextlib.suppress(OSError):
                sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        try:
            while True:
                part = self._next_event(sock, conn, deadline)
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > MAX_PAYLOAD_BYTES:
                        raise _Refused(_too_large(), method, target)
                elif isinstance(part, h11.EndOfMessage):
                    break
                elif isinstance(part, h11.ConnectionClosed):
                    raise _Closed
        except h11.RemoteProtocolError as exc:
            raise _Refused(
                error_response(400, "validation_error", f"Malformed HTTP request: {exc}."), method, target
            ) from exc
        except TimeoutError as exc:
            raise _Refused(self._incomplete(), method, target) from exc
        except OSError as exc:
            raise _Closed from exc
        return HttpRequest(
            method=method,
            target=target,
            headers=headers,
            body=bytes(body),
            source_ip=str(self.client_address[0]),
            protocol=f"HTTP/{event.http_version.decode('ascii')}",
            server_port=self.server.server_port,
        )

    def _incomplete(self) -> HttpResponse:
        return error_response(
            400, "validation_error", f"The request did not arrive in full within {self.server.read_timeout:g} s."
        )

    def _send(
        self,
        sock: socket.socket,
        conn: h11.Connection,
        response: HttpResponse,
        method: str,
        started: float,
        target: str,
        close: bool = False,
    ) -> bool:
        """Write the response (and one log line); False if the client is gone."""
        headers = [(name, value) for name, value in response.headers if name.lower() not in _HOP_BY_HOP]
        headers.append(("Date", formatdate(usegmt=True)))
        headers.append(("Server", "chat-sessions-local"))
        no_body = response.status in (204, 304) or response.status < 200
        if not no_body:
            headers.append(("Content-Length", str(len(response.body))))
        if close:
            headers.append(("Connection", "close"))
        try:
            data = (
                conn.send(
                    h11.Response(status_code=response.status, headers=headers, reason=_status_line(response.status))
                )
                or b""
            )
            if response.body and not no_body and method != "HEAD":
                data += conn.send(h11.Data(data=response.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            sock.settimeout(self.server.read_timeout)
            sock.sendall(data)
            ok = True
        except (h11.LocalProtocolError, OSError):
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        path = urlsplit(target).path if target != "-" else "-"
        print(f"{method or '-'} {path} {response.status} {elapsed:.0f}ms", file=self.server.log, flush=True)
        return ok

    def _linger(self, sock: socket.socket) -> None:
        """Before closing on a refused request, let the client read the answer: stop sending, and
        discard what it still sends for a moment (closing with unread data would reset the
        connection, and the client could lose the answer)."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            received = 0
            while time.monotonic() < deadline and received < 2 * MAX_PAYLOAD_BYTES:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)


def _too_large() -> HttpResponse:
    return error_response(413, "payload_too_large", "The request body is larger than 10 MB.")


_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}


# --- python -m local_stack ---------------------------------------------------------------------


@dataclass
class Resources:
    """What ``prepare_environment`` started, to be stopped on exit."""

    stops: list[Callable[[], None]] = field(default_factory=list)
    producers: list[Callable[[], None]] = field(default_factory=list)
    """The stack's own sources of invocations (the table's stream, the TTL emulation): stopped
    first, while the gateway still answers, since what they invoke calls back into it (a stream
    consumer publishes on the EventBridge bus the gateway serves). Stopped after the gateway's
    port closed, a batch in flight failed there and its traceback was printed on Ctrl-C."""
    dynamodb_endpoint: str = ""  # the DynamoDB itself (not the fault injector): the stream is read there

    def stop_producers(self) -> None:
        self._run(self.producers)

    def close(self) -> None:
        self.stop_producers()
        self._run(self.stops)

    @staticmethod
    def _run(stops: list[Callable[[], None]]) -> None:
        for stop in reversed(stops):
            try:
                stop()
            except Exception:  # best effort while exiting
                traceback.print_exc()
        stops.clear()


def _say(line: str) -> None:
    print(line, flush=True)


def _default(env: os._Environ[str] | dict[str, str], name: str, value: str) -> None:
    """``setdefault`` that also fills a variable set to blank (``NAME= make run``)."""
    if not env.get(name, "").strip():
        env[name] = value


def _fault_spec(env: os._Environ[str] | dict[str, str], resources: Resources) -> FaultSpec | None:
    """``DYNAMODB_FAULTS``, read before anything starts: a typo stops the stack at once (before
    DynamoDB Local is started only to be stopped again), with the reason."""
    from local_stack import faults

    try:
        return faults.parse_spec(env.get("DYNAMODB_FAULTS"))
    except ValueError as exc:
        resources.close()
        sys.exit(f"DYNAMODB_FAULTS: {exc}")


def _start_fault_injector(
    env: os._Environ[str] | dict[str, str], endpoint: str, resources: Resources, spec: FaultSpec | None
) -> None:
    """With ``DYNAMODB_FAULTS`` set, the handlers reach DynamoDB through the fault injector
    (``local_stack.faults``), which answers like AWS does on a bad day; the table was created
    directly, before it."""
    from local_stack import faults

    if spec is None:
        return
    injector = faults.start_in_thread(endpoint, spec)
    resources.stops.append(injector.shutdown)
    env["DYNAMODB_ENDPOINT"] = injector.url
    _say(
        f"DynamoDB faults ON ({spec.describe()}): handlers reach {endpoint} through {injector.url}; "
        f"counters at {injector.url}/__faults"
    )


def _start_embedded_dynamodb(env: os._Environ[str] | dict[str, str], resources: Resources) -> tuple[str, str]:
    """Amazon's DynamoDB Local when Java and its jar are here (``LOCAL_DYNAMODB=auto``, the
    default), else moto; returns its URL and a description. DynamoDB Local is the default because
    its cost per request does not grow with the table and its memory stays flat (README, "The
    local stack under load"); moto copies every table a transaction touches, so a send slows down
    and memory grows with every message stored. ``LOCAL_DATA_DIR`` keeps the tables on disk across
    restarts, which only DynamoDB Local can do."""
    from local_stack import dynamodb_local

    choice = env.get("LOCAL_DYNAMODB", "").strip().lower() or "auto"
    if choice not in ("auto", "dynamodb-local", "moto"):
        resources.close()
        sys.exit(f"LOCAL_DYNAMODB must be auto, dynamodb-local or moto, not {choice!r}")
    data = env.get("LOCAL_DATA_DIR", "").strip()
    missing = dynamodb_local.available()
    if choice == "dynamodb-local" or (choice == "auto" and missing is None) or (data and choice != "moto"):
        try:
            instance = dynamodb_local.start(data_dir=Path(data) if data else None)
        except dynamodb_local.DynamoDBLocalError as exc:
            resources.close()
            sys.exit(f"DynamoDB Local: {exc}")
        resources.stops.append(lambda: instance.stop(timeout=3))
        kept = f"tables kept in {Path(data).expanduser().resolve()}" if data else "in memory"
        return instance.url, f"embedded DynamoDB Local ({kept}) at {instance.url}"
    if data:
        resources.close()
        sys.exit("LOCAL_DATA_DIR needs DynamoDB Local (moto keeps nothing across restarts); unset LOCAL_DYNAMODB=moto")
    from local_stack import dynamodb

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server, endpoint = dynamodb.start_in_thread()
    resources.stops.append(server.shutdown)
    why = f"; DynamoDB Local: {missing}" if choice == "auto" and missing else ""
    return endpoint, f"embedded DynamoDB (moto, in memory{why}; slows down as the table grows) at {endpoint}"


def prepare_environment(env: os._Environ[str] | dict[str, str] = os.environ) -> Resources:
    """Environment defaults, then DynamoDB (the given endpoint, else an embedded one) with the
    table from template.yaml, then the model (the given one, else the local model). Runs before
    any handler module is imported, since handlers read the environment on a cold start."""
    resources = Resources()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "TABLE_NAME": DEFAULT_TABLE,
        "POWERTOOLS_SERVICE_NAME": "chat-sessions",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        _default(env, name, value)
    for name in _SERVICE_SETTINGS:  # blank means unset: the service's own default applies
        if name in env and not env[name].strip():
            del env[name]

    import boto3

    fault_spec = _fault_spec(env, resources)
    endpoint = env.get("DYNAMODB_ENDPOINT", "").strip()
    if endpoint:
        where = f"DynamoDB at {endpoint} (DYNAMODB_ENDPOINT)"
        if env.get("LOCAL_DATA_DIR", "").strip():
            _say("LOCAL_DATA_DIR is ignored: the DynamoDB at DYNAMODB_ENDPOINT keeps its own data")
    else:
        endpoint, where = _start_embedded_dynamodb(env, resources)
        env["DYNAMODB_ENDPOINT"] = endpoint
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"])
    created = cfn.ensure_table(client, env["TABLE_NAME"], stream=True)
    resources.dynamodb_endpoint = endpoint
    _say(f"table {env['TABLE_NAME']} {'created' if created else 'found'} in {where}")
    _start_fault_injector(env, endpoint, resources, fault_spec)

    if not env.get("OPENAI_API_KEY", "").strip() and not env.get("OPENAI_BASE_URL", "").strip():
        from local_stack import model_server

        model, base_url = model_server.start_in_thread()
        resources.stops.append(model.shutdown)
        env["OPENAI_BASE_URL"] = base_url
        _default(env, "OPENAI_MODEL", model_server.MODEL_ID)
        _say(
            f"model: the LOCAL deterministic model ({model_server.LABEL}, {env['OPENAI_MODEL']}) at {base_url}; "
            "set OPENAI_BASE_URL and/or OPENAI_API_KEY to use a real one"
        )
    else:
        target = env.get("OPENAI_BASE_URL", "").strip() or "https://api.openai.com/v1"
        _say(f"model: {env.get('OPENAI_MODEL') or 'gpt-4o-mini'} at {target} (openai client)")
    return resources


def _start_stream(
    gateway: Gateway, invoker: PoolInvoker, template: dict[str, Any], resources: Resources, port: int
) -> None:
    """The table's stream delivered to the template's stream consumers (``local_stack.streams``),
    and the EventBridge bus they publish to (``local_stack.eventbridge``): the functions' boto3
    ``events`` client reaches this gateway through ``AWS_ENDPOINT_URL_EVENTBRIDGE``."""
    from local_stack import eventbridge, streams

    bus = eventbridge.LocalEventBus()
    gateway.local_services.append(bus.serve)
    os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"] = f"http://{HOST}:{port}"
    try:
        poller = streams.start(
            resources.dynamodb_endpoint or os.environ["DYNAMODB_ENDPOINT"],
            os.environ["TABLE_NAME"],
            streams.pool_invoker(invoker.pool),
            region=os.environ["AWS_DEFAULT_REGION"],
            template=template,
        )
    except streams.UnsupportedPattern as exc:
        resources.close()
        sys.exit(f"template.yaml: {exc}")
    resources.producers.append(poller.stop)  # before the gateway, its workers and DynamoDB
    poller.functions_running = invoker.pool.running
    invoker.pool.on_activity(poller.nudge)
    gateway.local_services.append(lambda request: streams.serve(poller, request))
    names = ", ".join(state.consumer.function for state in poller.states) or "none"
    _say(f"table stream: delivered to {names}; GET /local/stream?drained waits for it; events at /local/events")


def _start_ttl(resources: Resources) -> None:
    """DynamoDB's TTL, emulated (``local_stack.ttl``): expired items (sessions under retention,
    idempotency records) deleted within ``LOCAL_TTL_INTERVAL_S``, on the DynamoDB itself (not
    through the fault injector), their stream records marked as DynamoDB's own."""
    from local_stack import ttl

    retention = os.environ.get("RETENTION_DAYS", "").strip() or "0"
    archived = os.environ.get("ARCHIVED_RETENTION_DAYS", "").strip() or "0"
    try:
        interval = ttl.interval_from(os.environ.get("LOCAL_TTL_INTERVAL_S"), (retention, archived) != ("0", "0"))
    except ValueError as exc:
        resources.close()
        sys.exit(str(exc))
    if interval == 0:
        _say("TTL emulation off (LOCAL_TTL_INTERVAL_S=0): expired items stay")
        return
    expirer = ttl.start(
        resources.dynamodb_endpoint or os.environ["DYNAMODB_ENDPOINT"],
        os.environ["TABLE_NAME"],
        os.environ["AWS_DEFAULT_REGION"],
        interval,
    )
    resources.producers.append(expirer.stop)
    _say(f"TTL: expired items deleted every {interval:g} s (RETENTION_DAYS={retention}, archived: {archived})")


def _start_websockets(gateway: Gateway, template: dict[str, Any], port: int) -> None:
    """The template's WebSocket API at ws://127.0.0.1:$PORT/ws, and its management API at
    http://127.0.0.1:$PORT/@connections, which the functions' ``WEBSOCKET_ENDPOINT`` names
    (``local_stack.websocket``)."""
    from local_stack.websocket import websocket_routes

    routes = websocket_routes(template)
    if not routes:
        return
    gateway.websockets = WebSocketHub(routes, gateway.log)
    os.environ[cfn.LOCAL_WEBSOCKET_ENDPOINT] = f"http://{HOST}:{port}"
    _say(f"WebSocket API ({', '.join(sorted(routes))}) at ws://{HOST}:{port}/ws?token=<JWT>")


def main() -> None:
    """Serve the API on http://127.0.0.1:$PORT until SIGINT or SIGTERM."""
    try:
        port = int(os.environ.get("PORT", "").strip() or DEFAULT_PORT)
    except ValueError:
        sys.exit(f"PORT must be a port number, not {os.environ['PORT']!r}")
    stopping = threading.Event()
    server: GatewayServer | None = None
    resources: Resources | None = None

    def stop_serving() -> None:
        if resources is not None:
            resources.stop_producers()  # while the gateway still answers what they invoke
        if server is not None:
            server.shutdown()

    def on_signal(signum: int, frame: Any) -> None:
        # Runs in the main thread while it serves: shutdown() waits for serve_forever to
        # return, so it has to be called from another thread.
        if not stopping.is_set():
            stopping.set()
            if server is not None:
                threading.Thread(target=stop_serving, name="stop").start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    try:
        listening = listen(port)
    except OSError as exc:
        print(f"cannot listen on {HOST}:{port}: {exc.strerror}; set PORT to a free port", file=sys.stderr)
        sys.exit(1)
    resources = prepare_environment()
    template = cfn.load()
    routes = cfn.routes(template)
    from local_stack.openapi import add_import_paths

    invoker = PoolInvoker(add_import_paths(routes))
    resources.stops.append(invoker.shutdown)
    warming = threading.Thread(target=invoker.pool.warm, name="warm", daemon=True)
    warming.start()  # the workers' fork server imports its libraries while the rest starts
    gateway = Gateway(
        routes,
        function_configs(template),
        invoker,
        secret=os.environ.get("LOCAL_JWT_SECRET") or DEFAULT_SECRET,
    )
    server = GatewayServer((HOST, port), gateway, listening=listening)
    _say(f"{len(routes)} routes from template.yaml; Swagger UI at http://{HOST}:{server.server_port}/docs")
    from local_stack.lambda_invoke import LocalLambda, pool_runner

    # Asynchronous invocations (a reply generated on its own): the functions' boto3 reaches the
    # Invoke API on this port, before any worker starts (workers take the environment at start).
    gateway.lambda_api = LocalLambda(template, pool_runner(invoker.pool, gateway.functions)).serve
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = f"http://{HOST}:{server.server_port}"
    _start_websockets(gateway, template, server.server_port)
    _start_stream(gateway, invoker, template, resources, server.server_port)
    _start_ttl(resources)
    warming.join()
    _say(f"ready http://{HOST}:{server.server_port}")
    if not stopping.is_set():
        server.serve_forever(poll_interval=0.2)
    print("stopping", file=sys.stderr, flush=True)
    server.server_close()
    resources.close()
    # Everything is stopped; skip the interpreter's teardown, which frees every object one by one
    # (with moto, the tables' copies: it held a stopped stack for minutes in the issue-14 runs).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
