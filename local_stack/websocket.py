"""The WebSocket API, locally: ``ws://127.0.0.1:$PORT/ws?token=<JWT>`` on the gateway's port, and
the management API (``POST``/``GET``/``DELETE /@connections/{connectionId}``) that
``chat_sessions.push`` posts to, so the code that pushes runs the same locally and deployed.

What it keeps from API Gateway's WebSocket APIs, read from ``template.yaml`` (its
``AWS::ApiGatewayV2`` routes and their integrations' functions):

- ``$connect`` is authorized like the HTTP routes locally (the local HS256 JWT, here from
  ``?token=``; deployed, ``functions/ws_authorize.py`` checks the issuer's RS256 JWT): no or a bad
  token answers ``401`` and nothing is invoked. The authorizer's context (``userId``: the token's
  ``sub``) is in every route's ``requestContext.authorizer``. The ``$connect`` function is invoked
  before the upgrade; a non-2xx answer refuses it.
- A frame is routed by ``$request.body.action`` (the API's ``RouteSelectionExpression``), else to
  ``$default``, else answered ``{"message": "Forbidden", ...}`` as API Gateway does; a route with
  a route response sends its function's ``body`` back as a frame.
- ``$disconnect`` runs when either side closes, after the connection is forgotten (a post to it
  then answers ``410 GoneException``, as deployed). Idle connections close after 10 minutes.
- Frames are written one at a time per connection, in the order the posts arrive.

Frames use wsproto (the h11 authors' sans-IO WebSocket protocol, on top of h11's handshake).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from local_stack import template as cfn
from local_stack.template import Route

if TYPE_CHECKING:
    from local_stack.gateway import Gateway, HttpRequest, HttpResponse

PATH = "/ws"
MANAGEMENT_PREFIX = "/@connections/"
IDLE_TIMEOUT_S = 600.0  # API Gateway closes a connection idle for 10 minutes
MAX_FRAME_BYTES = 128 * 1024  # API Gateway's frame limit is 32 KB; the message limit 128 KB
STAGE = "local"


@dataclass(frozen=True)
class WebSocketRoute:
    route: Route
    two_way: bool  # a route response sends the function's body back


def _functions_named(value: Any) -> list[str]:
    """The functions an integration URI names (``!Ref Fn.Alias``, ``!GetAtt Fn.Arn``...)."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return [value["Ref"].split(".", 1)[0]]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return [target[0] if isinstance(target, list) else str(target).split(".", 1)[0]]
        return [name for v in value.values() for name in _functions_named(v)]
    if isinstance(value, list):
        return [name for v in value for name in _functions_named(v)]
    return []


def websocket_routes(template: dict[str, Any] | None = None) -> dict[str, WebSocketRoute]:
    """The WebSocket API's routes by route key, each with the function its integration invokes."""
    template = template or cfn.load()
    resources = template["Resources"]
    functions = cfn.functions(template)
    global_code = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    two_way = {
        res["Properties"]["RouteId"]["Ref"]
        for res in resources.values()
        if res["Type"] == "AWS::ApiGatewayV2::RouteResponse"
    }
    found: dict[str, WebSocketRoute] = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        props = res["Properties"]
        target = props.get("Target", {})
        integration = str(target.get("Fn::Sub", "")).removeprefix("integrations/${").removesuffix("}")
        uri = resources.get(integration, {}).get("Properties", {}).get("IntegrationUri")
        names = [n for n in _functions_named(uri) if n in functions]
        if not names:
            continue
        fn = functions[names[0]]["Properties"]
        module, handler = fn["Handler"].rsplit(".", 1)
        route = Route(
            "WEBSOCKET", props["RouteKey"], names[0], module, handler, cfn.ROOT / fn.get("CodeUri", global_code)
        )
        found[props["RouteKey"]] = WebSocketRoute(route, name in two_way)
    return found


def new_connection_id() -> str:
    """Like API Gateway's (``L0SM9cOFvHcCIhw=``): 16 characters of base64 (URL-safe here)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


class LocalConnection:
    """One open WebSocket: the socket, its wsproto state and the lock that orders its writes."""

    def __init__(self, sock: socket.socket, connection_id: str, claims: dict[str, str], request: HttpRequest) -> None:
        self.sock = sock
        self.connection_id = connection_id
        self.claims = claims
        self.source_ip = request.source_ip
        self.user_agent = next((v for k, v in request.headers if k.lower() == "user-agent"), "")
        self.connected_at = int(time.time() * 1000)
        self.last_active_at = self.connected_at
        self.ws = Connection(ConnectionType.SERVER)
        self.lock = threading.Lock()

    def send(self, data: bytes) -> bool:
        """One frame (text when it is UTF-8, as API Gateway sends what a function posts)."""
        try:
            text = data.decode("utf-8")
            event: Any = TextMessage(data=text)
        except UnicodeDecodeError:
            event = BytesMessage(data=data)
        return self._write(event)

    def _write(self, event: Any) -> bool:
        with self.lock:
            try:
                self.sock.sendall(self.ws.send(event))
                return True
            except Exception:  # closed, or the protocol state says no more frames
                return False

    def close(self, code: int = 1000) -> None:
        self._write(CloseConnection(code=code))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class WebSocketHub:
    """The open connections, the upgrade, the frames' routing and the management API."""

    def __init__(self, routes: dict[str, WebSocketRoute], log: TextIO) -> None:
        self.routes = routes
        self.log = log
        self._connections: dict[str, LocalConnection] = {}
        self._lock = threading.Lock()

    # management API ------------------------------------------------------------------------

    def manage(self, request: HttpRequest) -> HttpResponse | None:
        """``@connections/{id}``: POST (send a frame), GET (about it), DELETE (close it)."""
        from local_stack.gateway import HttpResponse, json_response

        path = urlsplit(request.target).path
        if not path.startswith(MANAGEMENT_PREFIX):
            return None
        connection_id = unquote(path[len(MANAGEMENT_PREFIX) :])
        with self._lock:
            connection = self._connections.get(connection_id)
        if connection is None:
            gone = [("x-amzn-ErrorType", "GoneException")]
            return json_response(410, {"message": f"Connection {connection_id} is gone"}, gone)
        if request.method == "POST":
            if len(request.body) > MAX_FRAME_BYTES:
                return json_response(
                    413, {"message": "Payload too large"}, [("x-amzn-ErrorType", "PayloadTooLargeException")]
                )
            if not connection.send(request.body):
                return json_response(410, {"message": "Gone"}, [("x-amzn-ErrorType", "GoneException")])
            return HttpResponse(200, [("Content-Type", "application/json")], b"")
        if request.method == "DELETE":
            connection.close()
            return HttpResponse(204)
        if request.method == "GET":
            return json_response(
                200,
                {
                    "connectedAt": _iso(connection.connected_at),
                    "lastActiveAt": _iso(connection.last_active_at),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                },
            )
        return json_response(405, {"message": "Method not allowed"})

    def open_connections(self) -> list[str]:
        with self._lock:
            return sorted(self._connections)

    # the upgrade ---------------------------------------------------------------------------

    @staticmethod
    def is_upgrade(request: HttpRequest) -> bool:
        headers = {k.lower(): v for k, v in request.headers}
        return urlsplit(request.target).path == PATH and headers.get("upgrade", "").lower() == "websocket"

    def serve(self, gateway: Gateway, sock: socket.socket, conn: h11.Connection, request: HttpRequest) -> None:
        """Authorize, invoke ``$connect``, upgrade, then route frames until either side closes."""
        from local_stack.gateway import Unauthorized, authorize

        started = time.perf_counter()
        headers = {k.lower(): v for k, v in request.headers}
        query = dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))
        key = headers.get("sec-websocket-key", "")
        if request.method != "GET" or headers.get("sec-websocket-version") != "13" or not key:
            self._refuse(sock, conn, 400, "Bad Request", started)
            return
        token = query.get("token", "").strip()
        try:
            claims = authorize(f"Bearer {token}" if token else None, gateway.secret)
        except Unauthorized:
            self._refuse(sock, conn, 401, "Unauthorized", started)
            return
        connection = LocalConnection(sock, new_connection_id(), claims, request)
        connect = self.routes.get("$connect")
        if connect is not None:
            event = self._event(connection, "$connect", "CONNECT", request=request, query=query)
            result = self._invoke(gateway, connect, event)
            status = result.get("statusCode", 200) if isinstance(result, dict) else (200 if result is not None else 500)
            if not 200 <= int(status) < 300:
                self._refuse(sock, conn, int(status) if 400 <= int(status) < 600 else 500, "Forbidden", started)
                return
        accept = generate_accept_token(key.encode("ascii")).decode("ascii")
        handshake = h11.InformationalResponse(
            status_code=101,
            headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)],
        )
        try:
            sock.sendall(conn.send(handshake) or b"")
        except (h11.LocalProtocolError, OSError):
            self._disconnect(gateway, connection, 1006, "handshake failed")
            return
        with self._lock:
            self._connections[connection.connection_id] = connection
        self._note(f"WS $connect {connection.connection_id} 101 {(time.perf_counter() - started) * 1000:.0f}ms")
        pending = conn.trailing_data[0]
        if pending:
            connection.ws.receive_data(pending)
        self._frames(gateway, connection)

    def _refuse(self, sock: socket.socket, conn: h11.Connection, status: int, message: str, started: float) -> None:
        body = json.dumps({"message": message}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")]
        with contextlib.suppress(h11.LocalProtocolError, OSError):
            data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            sock.sendall(data)
        self._note(f"WS $connect - {status} {(time.perf_counter() - started) * 1000:.0f}ms")

    # frames ------------------------------------------------------------------------------

    def _frames(self, gateway: Gateway, connection: LocalConnection) -> None:
        code, reason = 1006, "Going away"
        text: list[str] = []
        connection.sock.settimeout(IDLE_TIMEOUT_S)
        try:
            while True:
                with connection.lock:
                    events = list(connection.ws.events())
                for event in events:
                    if isinstance(event, CloseConnection):
                        code, reason = event.code, event.reason or ""
                        connection._write(event.response())
                        return
                    if isinstance(event, Ping):
                        connection._write(event.response())
                    elif isinstance(event, TextMessage):
                        text.append(event.data)
                        if event.message_finished:
                            self._route(gateway, connection, "".join(text))
                            text.clear()
                try:
                    data = connection.sock.recv(65536)
                except TimeoutError:
                    code, reason = 1001, "Idle timeout"
                    connection.close(1001)
                    return
                except OSError:
                    return
                if not data:
                    return
                connection.last_active_at = int(time.time() * 1000)
                with connection.lock:
                    connection.ws.receive_data(data)
        except Exception:  # a protocol error from the client: close as API Gateway would
            code, reason = 1002, "Protocol error"
        finally:
            self._disconnect(gateway, connection, code, reason)

    def _route(self, gateway: Gateway, connection: LocalConnection, body: str) -> None:
        started = time.perf_counter()
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            action = None
        key = action if isinstance(action, str) and action in self.routes else "$default"
        route = self.routes.get(key)
        request_id = str(uuid.uuid4())
        if route is None or key in ("$connect", "$disconnect"):
            forbidden = {"message": "Forbidden", "connectionId": connection.connection_id, "requestId": request_id}
            connection.send(json.dumps(forbidden).encode())
            return
        event = self._event(connection, key, "MESSAGE", body=body, request_id=request_id)
        result = self._invoke(gateway, route, event)
        if result is None:  # the function failed
            failed = {
                "message": "Internal server error",
                "connectionId": connection.connection_id,
                "requestId": request_id,
            }
            connection.send(json.dumps(failed).encode())
        elif route.two_way and isinstance(result, dict) and isinstance(result.get("body"), str):
            connection.send(result["body"].encode())
        self._note(f"WS {key} {connection.connection_id} {(time.perf_counter() - started) * 1000:.0f}ms")

    def _disconnect(self, gateway: Gateway, connection: LocalConnection, code: int, reason: str) -> None:
        with self._lock:
            self._connections.pop(connection.connection_id, None)
        with contextlib.suppress(OSError):
            connection.sock.close()
        route = self.routes.get("$disconnect")
        if route is not None:
            event = self._event(connection, "$disconnect", "DISCONNECT", close=(code, reason))
            self._invoke(gateway, route, event)
        self._note(f"WS $disconnect {connection.connection_id} {code}")

    # events --------------------------------------------------------------------------------

    def _event(
        self,
        connection: LocalConnection,
        route_key: str,
        event_type: str,
        request: HttpRequest | None = None,
        query: dict[str, str] | None = None,
        body: str | None = None,
        request_id: str | None = None,
        close: tuple[int, str] | None = None,
    ) -> dict[str, Any]:
        """An API Gateway WebSocket (Lambda proxy) event."""
        now = time.time()
        sub = connection.claims["sub"]
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id or str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": connection.connected_at,
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "requestId": request_id or str(uuid.uuid4()),
            "domainName": "127.0.0.1",
            "connectionId": connection.connection_id,
            "apiId": "local",
            "authorizer": {"principalId": sub, "integrationLatency": 0, "userId": sub},
        }
        event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
        if event_type == "CONNECT" and request is not None:
            headers: dict[str, str] = {}
            for name, value in request.headers:
                headers[name] = f"{headers[name]},{value}" if name in headers else value
            event["headers"] = headers
            event["multiValueHeaders"] = {name: value.split(",") for name, value in headers.items()}
            event["queryStringParameters"] = query or {}
            event["multiValueQueryStringParameters"] = {name: [value] for name, value in (query or {}).items()}
        if event_type == "MESSAGE":
            context["messageId"] = str(uuid.uuid4())
            event["body"] = body or ""
        if event_type == "DISCONNECT" and close is not None:
            context["disconnectStatusCode"], context["disconnectReason"] = close
            event["headers"] = {"Host": "127.0.0.1", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        return event

    def _invoke(self, gateway: Gateway, route: WebSocketRoute, event: dict[str, Any]) -> Any:
        from local_stack.gateway import LAMBDA_DEFAULT_MEMORY_MB, LAMBDA_DEFAULT_TIMEOUT_S, FunctionConfig

        function = gateway.functions.get(route.route.function) or FunctionConfig(
            route.route.function, LAMBDA_DEFAULT_TIMEOUT_S, LAMBDA_DEFAULT_MEMORY_MB
        )
        try:
            return gateway.invoke(route.route, function, event)
        except Exception as exc:  # the function failed: API Gateway answers an internal error
            self._note(f"WS {route.route.path}: {function.name} failed: {str(exc).strip()[-2000:]}")
            return None

    def _note(self, line: str) -> None:
        print(line, file=self.log, flush=True)


def _iso(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(millis / 1000))
