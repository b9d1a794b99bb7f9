"""Counts what a boto3 DynamoDB client sends: round trips, request bytes, time, capacity.

It hooks botocore's event system on one client, so it sees exactly the requests that client
makes, whoever calls it (our store, or LangChain's history class), and nothing else:

- ``before-send``: one HTTP attempt, with its body (registered first, so a mock that answers
  requests in ``before-send`` — moto's ``mock_aws`` — cannot hide it);
- ``before-call`` / ``after-call``: one API call, its operation name and its duration
  (serialized request to parsed response, retries included);
- optionally ``before-parameter-build`` sets ``ReturnConsumedCapacity=TOTAL`` on every
  operation that accepts it, and ``after-call`` adds up the ``ConsumedCapacity`` the server
  reports. That changes the request bytes, so byte counts and capacity are taken in separate
  passes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

CAPACITY_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


@dataclass(frozen=True)
class Call:
    """One API call as the client made it."""

    operation: str
    seconds: float
    status: int
    reported_capacity: float | None


@dataclass
class Reading:
    """What the metered clients sent between two :meth:`DynamoMeter.reset` calls."""

    requests: int = 0
    request_bytes: int = 0
    calls: list[Call] = field(default_factory=list)

    @property
    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]

    @property
    def dynamodb_seconds(self) -> float:
        return sum(c.seconds for c in self.calls)

    @property
    def reported_capacity(self) -> float | None:
        """Sum of the capacity the server reported, or None when it reported none at all."""
        reported = [c.reported_capacity for c in self.calls if c.reported_capacity is not None]
        return sum(reported) if reported else None


def _capacity_units(consumed: Any) -> float | None:
    if not consumed:
        return None
    entries = consumed if isinstance(consumed, list) else [consumed]
    return float(sum(float(e.get("CapacityUnits", 0)) for e in entries if isinstance(e, dict)))


class DynamoMeter:
    """Attach to one or more DynamoDB clients; :meth:`reset` starts a new reading."""

    def __init__(self, return_capacity: bool = False) -> None:
        self.return_capacity = return_capacity
        self._lock = threading.Lock()
        self._reading = Reading()
        self._clients: list[Any] = []
        self._id = f"dynamo-meter-{id(self)}"

    # ------------------------------------------------------------------ hooks
    def _on_parameters(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.return_capacity and model.name in CAPACITY_OPERATIONS:
            params["ReturnConsumedCapacity"] = "TOTAL"

    def _on_send(self, request: Any, **_: Any) -> None:
        body = request.body or b""
        size = len(body.encode() if isinstance(body, str) else body)
        with self._lock:
            self._reading.requests += 1
            self._reading.request_bytes += size

    def _on_before_call(self, context: dict[str, Any], **_: Any) -> None:
        context[self._id] = time.perf_counter()

    def _on_after_call(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        started = context.pop(self._id, None)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        call = Call(
            operation=str(model.name),
            seconds=elapsed,
            status=int(getattr(http_response, "status_code", 0)),
            reported_capacity=_capacity_units(parsed.get("ConsumedCapacity")),
        )
        with self._lock:
            self._reading.calls.append(call)

    # ------------------------------------------------------------------ control
    def _handlers(self) -> list[tuple[str, Any, bool]]:
        return [
            ("before-parameter-build.dynamodb", self._on_parameters, False),
            ("before-send.dynamodb", self._on_send, True),
            ("before-call.dynamodb", self._on_before_call, False),
            ("after-call.dynamodb", self._on_after_call, False),
        ]

    def attach(self, client: Any) -> DynamoMeter:
        events = client.meta.events
        for event, handler, first in self._handlers():
            if first:
                events.register_first(event, handler, unique_id=f"{self._id}-{event}")
            else:
                events.register(event, handler, unique_id=f"{self._id}-{event}")
        self._clients.append(client)
        return self

    def detach(self) -> None:
        for client in self._clients:
            for event, handler, _ in self._handlers():
                client.meta.events.unregister(event, handler, unique_id=f"{self._id}-{event}")
        self._clients.clear()

    def reset(self) -> None:
        with self._lock:
            self._reading = Reading()

    def take(self) -> Reading:
        """The reading so far, and start a new one."""
        with self._lock:
            reading, self._reading = self._reading, Reading()
        return reading
