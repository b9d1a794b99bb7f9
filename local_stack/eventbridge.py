"""A local EventBridge bus: the ``PutEvents`` API the publisher calls, and ``GET /local/events``.

Why it exists: deployed, ``functions/publish_events.py`` puts the domain events on the
template's EventBridge bus with boto3 (``events.put_events``). Locally the same code runs
unchanged: the stack sets ``AWS_ENDPOINT_URL_EVENTBRIDGE`` to the local gateway, and this module
answers the boto3 ``PutEvents`` request there (JSON 1.1, ``X-Amz-Target: AWSEvents.PutEvents``)
the way EventBridge does (``{"FailedEntryCount", "Entries": [{"EventId"} | {"ErrorCode",
"ErrorMessage"}]}``, an entry refused for what EventBridge refuses: no ``Source``,
``DetailType`` or ``Detail``, a ``Detail`` that is not a JSON object, more than 10 entries,
over 256 KB). It keeps the last ``MAX_EVENTS`` (1,000) events in the order they were put, each
numbered from 1 (``n``), as an EventBridge rule target would receive them.

``GET /local/events?after=<n>`` (no token; local only): ``200 {"events": [...], "last": <n>}``,
the kept events numbered above ``after`` (default 0), oldest first, at most ``limit`` (default
and maximum 1,000), and ``last``, the number of the newest event put so far (0 when none), to
pass as ``after`` next time. An event: ``{"n", "id", "version": "0", "detail-type", "source",
"account", "time", "region", "resources", "detail", "event-bus-name"}``. Events older than the
last 1,000 are gone (a gap between ``after`` and the first ``n`` shows it).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_stack.gateway import ACCOUNT_ID, HttpRequest, HttpResponse, error_response, json_response

MAX_EVENTS = 1000
MAX_ENTRIES = 10  # per PutEvents call, as EventBridge
MAX_REQUEST_BYTES = 256 * 1024
EVENTS_PATH = "/local/events"
TARGET = "AWSEvents.PutEvents"


class LocalEventBus:
    """The events put on any bus, the last ``MAX_EVENTS`` kept in order."""

    def __init__(self, region: str = "us-east-1", max_events: int = MAX_EVENTS) -> None:
        self.region = region
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._count = 0
        self._lock = threading.Lock()

    def serve(self, request: HttpRequest) -> HttpResponse | None:
        """The gateway's hook: PutEvents and ``GET /local/events``; None for anything else."""
        target = next((v for k, v in request.headers if k.lower() == "x-amz-target"), "")
        if request.method == "POST" and target.startswith("AWSEvents."):
            if target != TARGET:
                return _aws_error(400, "UnknownOperationException", f"{target} is not emulated locally")
            return self._put_events(request.body)
        split = urlsplit(request.target)
        if split.path != EVENTS_PATH:
            return None
        if request.method not in ("GET", "HEAD"):
            return error_response(405, "method_not_allowed", f"{EVENTS_PATH} answers GET only.", [("Allow", "GET")])
        query = parse_qs(split.query)
        try:
            after = int(query.get("after", ["0"])[0])
            limit = int(query.get("limit", [str(MAX_EVENTS)])[0])
        except ValueError:
            after, limit = -1, 0
        if after < 0 or not 1 <= limit <= MAX_EVENTS:
            message = f"after is an event number (0 or more); limit is 1 to {MAX_EVENTS}."
            return error_response(400, "validation_error", message)
        return json_response(200, self.events(after, limit))

    def events(self, after: int = 0, limit: int = MAX_EVENTS) -> dict[str, Any]:
        with self._lock:
            found = [e for e in self._events if e["n"] > after][:limit]
            return {"events": found, "last": self._count}

    def _put_events(self, body: bytes) -> HttpResponse:
        if len(body) > MAX_REQUEST_BYTES:
            return _aws_error(400, "ValidationException", "Total size of the entries in the request is over the limit.")
        try:
            entries = json.loads(body or b"{}").get("Entries")
        except (ValueError, AttributeError):
            return _aws_error(400, "SerializationException", "The request body is not a JSON object.")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            return _aws_error(400, "ValidationException", f"Entries must hold 1 to {MAX_ENTRIES} entries.")
        results: list[dict[str, Any]] = []
        failed = 0
        with self._lock:
            for entry in entries:
                problem = _problem(entry)
                if problem:
                    failed += 1
                    results.append({"ErrorCode": "InvalidArgument", "ErrorMessage": problem})
                    continue
                event_id = str(uuid.uuid4())
                self._count += 1
                when = entry.get("Time")
                time_text = (
                    datetime.fromtimestamp(float(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    if isinstance(when, int | float)
                    else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                )
                self._events.append(
                    {
                        "n": self._count,
                        "version": "0",
                        "id": event_id,
                        "detail-type": entry["DetailType"],
                        "source": entry["Source"],
                        "account": ACCOUNT_ID,
                        "time": time_text,
                        "region": self.region,
                        "resources": list(entry.get("Resources") or []),
                        "detail": json.loads(entry["Detail"]),
                        "event-bus-name": entry.get("EventBusName") or "default",
                    }
                )
                results.append({"EventId": event_id})
        return HttpResponse(
            200,
            [("Content-Type", "application/x-amz-json-1.1")],
            json.dumps({"FailedEntryCount": failed, "Entries": results}).encode(),
        )


def _problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "An entry must be an object."
    for name in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            return f"Parameter {name} is not valid."
    try:
        detail = json.loads(entry["Detail"])
    except ValueError:
        return "Detail is malformed."
    if not isinstance(detail, dict):
        return "Detail is malformed."
    return None


def _aws_error(status: int, code: str, message: str) -> HttpResponse:
    body = {"__type": code, "message": message}
    return HttpResponse(status, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(body).encode())


def start_in_thread(region: str = "us-east-1") -> tuple[Any, str, LocalEventBus]:
    """The bus alone on a free port of 127.0.0.1 (``make invoke`` and tests, where no gateway
    runs): returns the server (``shutdown()`` stops it), its URL for
    ``AWS_ENDPOINT_URL_EVENTBRIDGE``, and the bus."""
    from local_stack.gateway import Gateway, GatewayServer

    def no_routes(route: Any, function: Any, event: dict[str, Any]) -> Any:
        raise AssertionError("the event bus has no routes")

    bus = LocalEventBus(region)
    quiet = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server (its access log)
    server = GatewayServer(("127.0.0.1", 0), Gateway([], {}, no_routes, local_services=[bus.serve]), log=quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="eventbus", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}", bus
