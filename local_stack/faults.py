"""A DynamoDB fault injector: an HTTP proxy that makes any local DynamoDB fight back like AWS.

Why it exists: every invariant of the service rests on DynamoDB conditions, and the DynamoDBs a
developer runs (moto, Amazon's DynamoDB Local) never cancel a transaction for a collision, never
throttle and never lose the answer to a write they committed. Real DynamoDB does all three, and
code that was only ever run against the polite ones answers ``500`` (or stores a message twice)
the first time it meets them. This proxy sits on 127.0.0.1 in front of any DynamoDB endpoint,
speaks the DynamoDB JSON 1.0 protocol (the operation is the ``X-Amz-Target`` header) and, at
seeded rates, answers with exactly the error shapes and HTTP statuses real DynamoDB returns:

========================  ==========================================  ==========================
kind                      operations                                  answer
========================  ==========================================  ==========================
``tx_conflict``           TransactWriteItems, TransactGetItems        400 TransactionCanceled-
                                                                      Exception, one reason per
                                                                      item: TransactionConflict
                                                                      on one, ``None`` on others
``write_conflict``        PutItem, UpdateItem, DeleteItem on an       400 TransactionConflict-
                          item that transactions also write           Exception
``throttle``              every data-plane operation                  400 ProvisionedThroughput-
                                                                      ExceededException or
                                                                      ThrottlingException (with
                                                                      ThrottlingReasons); for a
                                                                      transaction also a
                                                                      cancellation with a
                                                                      ThrottlingError reason
``server_error``          every data-plane operation                  500 InternalServerError,
                                                                      nothing done
``unprocessed``           BatchWriteItem, BatchGetItem                200, part of the batch
                                                                      handed back unprocessed
``lost``                  TransactWriteItems                          forwarded and committed,
                                                                      then 500 InternalServer-
                                                                      Error: the answer is lost
``lost_write``            PutItem, UpdateItem, DeleteItem,            the same for single writes
                          BatchWriteItem
``in_progress``           a retry of a ``lost`` transaction's token   400 TransactionInProgress-
                                                                      Exception, once
``lost_retries``          the next two retries of a ``lost``          500 InternalServerError:
                          transaction's token                         the SDK gives up, and its
                                                                      caller sees a failure of a
                                                                      write that was committed
========================  ==========================================  ==========================

Faults that are not forwarded leave the table untouched, exactly as DynamoDB does. Table
management (CreateTable, DescribeTable...) and anything the proxy does not recognise pass
untouched, so tables are created and inspected through it as usual.

``ClientRequestToken``: DynamoDB makes a TransactWriteItems idempotent for 10 minutes per token
(the same request again answers success without applying it; other parameters answer
``IdempotentParameterMismatchException``; while the first is still running,
``TransactionInProgressException``), and botocore puts a token on every TransactWriteItems and
keeps it across its own retries. DynamoDB Local honours tokens, moto ignores them; so that a lost
answer retried by the SDK behaves as on AWS whatever the backend, the proxy keeps the tokens of the
transactions it forwarded and answers repeats itself (``tokens=backend`` leaves them to the
backend). Like DynamoDB (and DynamoDB Local), a token is taken only by a transaction that
committed: a cancelled one can be retried with the same token.

Decisions are seeded: request ``n`` (in arrival order) draws from ``Random(f"{seed}/{n}")``, so
one seed and one request order give the same faults. Counters (calls per operation, faults per
kind and operation, answers by status and code, token replays) are readable in-process
(:meth:`FaultInjector.snapshot`) and over HTTP: ``GET /__faults`` on the proxy, and
``GET /__faults/events?after=N`` for the recent faults one by one (time, operation, kind, code).

Turned on for the local stack by one variable, ``DYNAMODB_FAULTS`` (``default``, or
``seed=7,tx_conflict=0.12,...``; see :func:`parse_spec`). Alone::

    python -m local_stack.faults --backend http://127.0.0.1:8000 --faults default --port 8001
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import random
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
TARGET_PREFIX = "DynamoDB_20120810."
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
TOKEN_WINDOW_S = 600.0  # DynamoDB keeps a ClientRequestToken for 10 minutes
ACCOUNT_ID = "000000000000"
EVENTS_KEPT = 10_000
TRANSACTIONAL_KEPT = 200_000

TRANSACT_WRITE = "TransactWriteItems"
TRANSACT_GET = "TransactGetItems"
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", TRANSACT_GET})
WRITES = frozenset({*SINGLE_WRITES, "BatchWriteItem", TRANSACT_WRITE})
DATA_PLANE = READS | WRITES

# Which operations each kind applies to; the order is the order a request's draw is matched in.
KIND_OPERATIONS: dict[str, frozenset[str]] = {
    "tx_conflict": frozenset({TRANSACT_WRITE, TRANSACT_GET}),
    "write_conflict": SINGLE_WRITES,
    "throttle": DATA_PLANE,
    "server_error": DATA_PLANE,
    "unprocessed": frozenset({"BatchWriteItem", "BatchGetItem"}),
    "lost": frozenset({TRANSACT_WRITE}),
    "lost_write": frozenset({*SINGLE_WRITES, "BatchWriteItem"}),
}
KINDS = (*KIND_OPERATIONS, "in_progress", "lost_retries")

# The preset: close to what a busy table sees on a bad day (and what issue 8 was found with).
DEFAULT_RATES = {"tx_conflict": 0.12, "write_conflict": 0.08, "throttle": 0.04, "lost": 0.04, "in_progress": 0.5}
DEFAULT_SEED = 7
_OFF = {"", "0", "off", "none", "false", "no"}

# Messages as DynamoDB writes them (the API reference's cancellation-reason table, and the
# shapes DynamoDB Local itself answers with).
MSG_CONFLICT_REASON = "Transaction is ongoing for the item."
MSG_CONFLICT = "Transaction is ongoing for the item"
MSG_ON_DEMAND_THROTTLE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling "
    "your table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)
MSG_MAX_ON_DEMAND = "The request was denied due to request throttling."
MSG_INTERNAL = "Internal server error"
MSG_IN_PROGRESS = "The transaction with the given request token is already in progress."
MSG_MISMATCH = "The request uses the same client token as a previous, but non-identical request."


# --- the specification -------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSpec:
    """What to inject: a rate (0..1) per kind, the seed, and who honours ``ClientRequestToken``."""

    rates: dict[str, float]
    seed: int = DEFAULT_SEED
    tokens: str = "emulate"  # or "backend"

    def describe(self) -> str:
        """The spec as ``DYNAMODB_FAULTS`` would spell it (kinds at 0 left out)."""
        parts = [f"seed={self.seed}"]
        parts += [f"{kind}={self.rates[kind]:g}" for kind in KINDS if self.rates.get(kind)]
        if self.tokens != "emulate":
            parts.append(f"tokens={self.tokens}")
        return ",".join(parts)


def parse_spec(text: str | None) -> FaultSpec | None:
    """``DYNAMODB_FAULTS`` as a spec, or None when it is unset or off (``""``, ``0``, ``off``).

    ``default`` is the preset (``seed=7,tx_conflict=0.12,write_conflict=0.08,throttle=0.04,
    lost=0.04,in_progress=0.5``); ``default,throttle=0.2`` changes one rate of it; anything else
    is a comma-separated list of ``kind=rate``, ``seed=N`` and ``tokens=emulate|backend``, every
    kind not named at 0. Raises ``ValueError`` on an unknown name or a rate outside 0..1, and
    when the kinds that apply to one operation add up to more than 1.
    """
    if text is None or text.strip().lower() in _OFF:
        return None
    rates = dict.fromkeys(KINDS, 0.0)
    seed = DEFAULT_SEED
    tokens = "emulate"
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        if part.lower() == "default":
            rates.update(DEFAULT_RATES)
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"{part!r} is not name=value (or 'default')")
        if name == "seed":
            try:
                seed = int(value)
            except ValueError as exc:
                raise ValueError(f"seed must be an integer, not {value!r}") from exc
        elif name == "tokens":
            if value not in ("emulate", "backend"):
                raise ValueError(f"tokens must be 'emulate' or 'backend', not {value!r}")
            tokens = value
        elif name in rates:
            try:
                rate = float(value)
            except ValueError as exc:
                raise ValueError(f"{name} must be a number between 0 and 1, not {value!r}") from exc
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
            rates[name] = rate
        else:
            raise ValueError(f"unknown name {name!r}; known: seed, tokens, {', '.join(KINDS)}")
    for operation in sorted(DATA_PLANE):
        total = sum(rates[kind] for kind, ops in KIND_OPERATIONS.items() if operation in ops)
        if total > 1.0 + 1e-9:
            raise ValueError(f"the rates that apply to {operation} add up to {total:g}, more than 1")
    return FaultSpec(rates=rates, seed=seed, tokens=tokens)


# --- answers -------------------------------------------------------------------------------------


@dataclass
class Answer:
    """An HTTP answer to the client: forwarded from the backend, or made here."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    code: str = ""  # the error code, for the counters ("" for a success)


def _json_answer(status: int, payload: dict[str, Any], code: str = "") -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", JSON_CONTENT_TYPE),
        ("x-amzn-RequestId", uuid.uuid4().hex.upper()),
        # DynamoDB checksums every body; botocore verifies it when the header is there.
        ("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)),
    ]
    return Answer(status, headers, body, code)


def error_answer(code: str, message: str, status: int = 400, message_key: str = "message", **extra: Any) -> Answer:
    """DynamoDB's JSON 1.0 error: ``{"__type": "<namespace>#<Code>", "message": ...}``.

    The message key follows the service model's member name for that error (``Message`` for the
    transaction errors, ``message`` for most others); botocore reads either.
    """
    return _json_answer(status, {"__type": ERROR_PREFIX + code, message_key: message, **extra}, code)


def cancelled(reasons: list[tuple[str, str | None]]) -> Answer:
    """``TransactionCanceledException`` with one reason per item, in item order; an item with no
    error has the literal code ``"None"`` and no message, as DynamoDB writes it."""
    entries = [{"Code": code} if message is None else {"Code": code, "Message": message} for code, message in reasons]
    summary = ", ".join(code for code, _ in reasons)
    return error_answer(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{summary}]",
        message_key="Message",
        CancellationReasons=entries,
    )


def internal_error() -> Answer:
    return error_answer("InternalServerError", MSG_INTERNAL, status=500)


def _table_arn(table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT_ID}:table/{table}"


def _tables(operation: str, request: dict[str, Any]) -> list[str]:
    """The tables a request touches, in order (for throttling reasons' resource ARNs)."""
    if isinstance(request.get("TableName"), str):
        return [request["TableName"]]
    if operation in (TRANSACT_WRITE, TRANSACT_GET):
        names = [
            str(action.get("TableName", ""))
            for item in request.get("TransactItems") or []
            if isinstance(item, dict)
            for action in item.values()
            if isinstance(action, dict)
        ]
        return [n for n in names if n] or ["table"]
    if isinstance(request.get("RequestItems"), dict):
        return list(request["RequestItems"]) or ["table"]
    return ["table"]


def _describe_key(action: dict[str, Any]) -> str | None:
    """``PK|SK`` of an action's ``Key`` (every attribute of it), or of its ``Item`` (the PK/SK
    attributes, when it has them: the proxy does not know other tables' key schemas)."""
    key = action.get("Key")
    if not isinstance(key, dict):
        item = action.get("Item")
        key = {n: item[n] for n in ("PK", "SK") if n in item} if isinstance(item, dict) else None
    if not key:
        return None
    values = [next(iter(v.values()), "") if isinstance(v, dict) else v for v in key.values()]
    return "|".join(str(v) for v in values)[:300]


def _keys(request: dict[str, Any]) -> list[str]:
    """The items a request names, for the fault events (so a failure report says which item a
    fault hit): single-item operations and transactions; batches and queries name none."""
    actions: list[Any] = [request]
    if isinstance(request.get("TransactItems"), list):
        actions = [a for item in request["TransactItems"] if isinstance(item, dict) for a in item.values()]
    return [k for a in actions if isinstance(a, dict) and (k := _describe_key(a))]


def _item_count(request: dict[str, Any]) -> int:
    items = request.get("TransactItems")
    return len(items) if isinstance(items, list) and items else 1


def throttled(operation: str, request: dict[str, Any], rng: random.Random) -> Answer:
    """One of the ways DynamoDB says "too fast": on an on-demand table a hot key range answers
    ``ProvisionedThroughputExceededException`` (with ``ThrottlingReasons``), the table's maximum
    on-demand throughput ``ThrottlingException`` (``throttlingReasons``, as the model spells
    it); a transaction may instead be cancelled with a ``ThrottlingError`` reason on one item."""
    access = "Write" if operation in WRITES else "Read"
    table = _tables(operation, request)[0]
    shapes = 3 if operation in (TRANSACT_WRITE, TRANSACT_GET) else 2
    shape = rng.randrange(shapes)
    if shape == 0:
        reasons = [{"reason": f"Table{access}KeyRangeThroughputExceeded", "resource": _table_arn(table)}]
        return error_answer("ProvisionedThroughputExceededException", MSG_ON_DEMAND_THROTTLE, ThrottlingReasons=reasons)
    if shape == 1:
        reasons = [{"reason": f"Table{access}MaxOnDemandThroughputExceeded", "resource": _table_arn(table)}]
        return error_answer("ThrottlingException", MSG_MAX_ON_DEMAND, throttlingReasons=reasons)
    count = _item_count(request)
    return cancelled(_reasons(count, {rng.randrange(count)}, "ThrottlingError", MSG_ON_DEMAND_THROTTLE))


def conflict_cancellation(request: dict[str, Any], rng: random.Random) -> Answer:
    """A transaction that collided with another one on one of its items (sometimes two)."""
    count = _item_count(request)
    hit = set(rng.sample(range(count), min(count, 1 + int(rng.random() < 0.25))))
    return cancelled(_reasons(count, hit, "TransactionConflict", MSG_CONFLICT_REASON))


def _reasons(count: int, hit: set[int], code: str, message: str) -> list[tuple[str, str | None]]:
    return [(code, message) if i in hit else ("None", None) for i in range(count)]


# --- counters ------------------------------------------------------------------------------------


@dataclass
class Counters:
    calls: dict[str, int] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    forwarded: int = 0

    def bump(self, table: dict[str, int], key: str, by: int = 1) -> None:
        table[key] = table.get(key, 0) + by


@dataclass
class _Token:
    fingerprint: str
    running: bool = True
    answer: Answer | None = None
    done_at: float = 0.0
    in_progress_once: bool = False
    failing_retries: int = 0


# --- the proxy -----------------------------------------------------------------------------------


class FaultInjector:
    """The proxy: decides, forwards, counts. One instance per listening socket."""

    def __init__(self, backend: str, spec: FaultSpec, host: str = HOST, port: int = 0) -> None:
        split = urlsplit(backend)
        if split.scheme != "http" or not split.hostname:
            raise ValueError(f"the backend must be an http:// URL, not {backend!r}")
        self.backend = backend.rstrip("/")
        self._backend_host = split.hostname
        self._backend_port = split.port or 80
        self._backend_netloc = split.netloc
        self.spec = spec
        self._lock = threading.Lock()
        self._count = 0
        self.counters = Counters()
        self._tokens: dict[str, _Token] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._schemas: dict[str, tuple[str, ...]] = {}
        self._transactional: OrderedDict[str, None] = OrderedDict()  # items transactions write
        self._event_count = 0
        self._local = threading.local()
        self._server = _ProxyServer((host, port), self)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> FaultInjector:
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb-faults", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # reading the counters -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far (a copy): ``calls`` per operation, ``faults`` per kind and
        operation, ``answers`` by ``"<status> <code>"``, ``tokens`` (replayed, mismatch,
        duplicate_in_flight), ``forwarded`` requests and the ``spec``."""
        with self._lock:
            c = self.counters
            return {
                "spec": self.spec.describe(),
                "backend": self.backend,
                "requests": self._count,
                "calls": dict(sorted(c.calls.items())),
                "faults": {kind: dict(sorted(ops.items())) for kind, ops in sorted(c.faults.items())},
                "faults_total": sum(sum(ops.values()) for ops in c.faults.values()),
                "answers": dict(sorted(c.answers.items())),
                "tokens": dict(sorted(c.tokens.items())),
                "forwarded": c.forwarded,
                "events": self._event_count,
            }

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """The faults injected, one by one (``n`` counts from 1), those numbered above ``after``
        that are still kept (the last 10,000)."""
        with self._lock:
            return [dict(e) for e in self._events if e["n"] > after]

    # deciding -------------------------------------------------------------------------------

    def handle(self, operation: str, body: bytes, headers: list[tuple[str, str]]) -> Answer | None:
        """The answer to one DynamoDB request (None: close the connection, the backend is gone)."""
        with self._lock:
            self._count += 1
            n = self._count
            self.counters.bump(self.counters.calls, operation)
        if operation not in DATA_PLANE:
            return self._finish(operation, self._forward(body, headers))
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):  # let the backend say what is wrong with it
            return self._finish(operation, self._forward(body, headers))
        rng = random.Random(f"{self.spec.seed}/{n}")
        kind = self._draw(operation, rng)
        if operation == TRANSACT_WRITE:
            self._remember_transaction(request, headers)
        elif kind == "write_conflict" and not self._in_transactions(request, headers):
            # DynamoDB refuses a single write only for an item a transaction is writing; an
            # item no transaction ever writes (an idempotency record, say) never sees this.
            kind = None
        token = request.get("ClientRequestToken") if operation == TRANSACT_WRITE else None
        if isinstance(token, str) and token and self.spec.tokens == "emulate":
            return self._finish(operation, self._transaction_with_token(token, request, body, headers, kind, rng))
        return self._finish(operation, self._apply(kind, operation, request, body, headers, rng))

    # items that transactions write ------------------------------------------------------------

    def _key_names(self, table: str, headers: list[tuple[str, str]]) -> tuple[str, ...] | None:
        """The table's key attributes (hash first), asked of the backend once (DescribeTable, with
        the client's own headers: local DynamoDBs scope tables by the credential, not the
        signature)."""
        with self._lock:
            if table in self._schemas:
                return self._schemas[table]
        ask = [(k, v) for k, v in headers if k.lower() != "x-amz-target"]
        ask.append(("X-Amz-Target", TARGET_PREFIX + "DescribeTable"))
        answer = self._forward(json.dumps({"TableName": table}).encode(), ask, count=False)
        if answer is None or answer.status != 200:
            return None
        try:
            schema = json.loads(answer.body)["Table"]["KeySchema"]
            names = tuple(k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH"))
        except (ValueError, KeyError, TypeError):
            return None
        with self._lock:
            self._schemas[table] = names
        return names

    def _item_key(self, table: Any, action: dict[str, Any], headers: list[tuple[str, str]]) -> str | None:
        """``table|<key values>`` of the item an action (Key, or Item) is about."""
        if not isinstance(table, str):
            return None
        source = action.get("Key") if isinstance(action.get("Key"), dict) else action.get("Item")
        names = self._key_names(table, headers) if isinstance(source, dict) else None
        if not names or not isinstance(source, dict) or any(n not in source for n in names):
            return None
        return table + "|" + "|".join(json.dumps(source[n], sort_keys=True) for n in names)

    def _remember_transaction(self, request: dict[str, Any], headers: list[tuple[str, str]]) -> None:
        actions = [a for item in request.get("TransactItems") or [] if isinstance(item, dict) for a in item.values()]
        for action in actions:
            if isinstance(action, dict) and (key := self._item_key(action.get("TableName"), action, headers)):
                with self._lock:
                    self._transactional[key] = None
                    self._transactional.move_to_end(key)
                    while len(self._transactional) > TRANSACTIONAL_KEPT:
                        self._transactional.popitem(last=False)

    def _in_transactions(self, request: dict[str, Any], headers: list[tuple[str, str]]) -> bool:
        key = self._item_key(request.get("TableName"), request, headers)
        with self._lock:
            return key is not None and key in self._transactional

    def _draw(self, operation: str, rng: random.Random) -> str | None:
        """The kind this request gets (or None), from one uniform draw against the rates of the
        kinds that apply to ``operation``."""
        u = rng.random()
        edge = 0.0
        for kind, operations in KIND_OPERATIONS.items():
            if operation in operations:
                edge += self.spec.rates.get(kind, 0.0)
                if u < edge:
                    return kind
        return None

    def _apply(
        self,
        kind: str | None,
        operation: str,
        request: dict[str, Any],
        body: bytes,
        headers: list[tuple[str, str]],
        rng: random.Random,
    ) -> Answer | None:
        if kind == "tx_conflict":
            return self._fault(kind, operation, conflict_cancellation(request, rng), request)
        if kind == "write_conflict":
            return self._fault(kind, operation, error_answer("TransactionConflictException", MSG_CONFLICT), request)
        if kind == "throttle":
            return self._fault(kind, operation, throttled(operation, request, rng), request)
        if kind == "server_error":
            return self._fault(kind, operation, internal_error(), request)
        if kind == "unprocessed":
            return self._unprocessed(operation, request, headers, rng)
        if kind in ("lost", "lost_write"):
            answer = self._forward(body, headers)
            if answer is not None and answer.status == 200:
                return self._fault(kind, operation, internal_error(), request)
            return answer
        return self._forward(body, headers)

    def _fault(self, kind: str, operation: str, answer: Answer, request: dict[str, Any]) -> Answer:
        event = {
            "t": time.time(),
            "operation": operation,
            "kind": kind,
            "code": answer.code,
            "keys": _keys(request),
        }
        with self._lock:
            self.counters.faults.setdefault(kind, {})
            self.counters.bump(self.counters.faults[kind], operation)
            self._event_count += 1
            self._events.append({"n": self._event_count, **event})
        return answer

    def _finish(self, operation: str, answer: Answer | None) -> Answer | None:
        if answer is not None:
            with self._lock:
                key = f"{answer.status} {answer.code}".rstrip() if answer.code else str(answer.status)
                self.counters.bump(self.counters.answers, key)
        return answer

    # ClientRequestToken ---------------------------------------------------------------------

    @staticmethod
    def _fingerprint(request: dict[str, Any]) -> str:
        # What makes two requests "the same" for DynamoDB: everything but the token and the
        # what-to-return options (DynamoDB Local agrees: ReturnConsumedCapacity may differ).
        same = {
            k: v
            for k, v in request.items()
            if k not in ("ClientRequestToken", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics")
        }
        return hashlib.sha256(json.dumps(same, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def _transaction_with_token(
        self,
        token: str,
        request: dict[str, Any],
        body: bytes,
        headers: list[tuple[str, str]],
        kind: str | None,
        rng: random.Random,
    ) -> Answer | None:
        fingerprint = self._fingerprint(request)
        now = time.monotonic()
        with self._lock:
            for old in [t for t, r in self._tokens.items() if not r.running and now - r.done_at > TOKEN_WINDOW_S]:
                del self._tokens[old]
            record = self._tokens.get(token)
            if record is None:
                record = self._tokens[token] = _Token(fingerprint)
                new = True
            else:
                new = False
        if not new:
            return self._repeat(record, fingerprint, kind, request, rng)
        answer: Answer | None = None
        try:
            if kind in ("tx_conflict", "throttle", "server_error"):
                answer = self._apply(kind, TRANSACT_WRITE, request, body, headers, rng)
                return answer
            committed = self._forward(body, headers)
            if committed is not None and committed.status == 200:
                with self._lock:
                    record.answer = committed
                    record.running = False
                    record.done_at = time.monotonic()
                    record.in_progress_once = kind == "lost" and rng.random() < self.spec.rates.get("in_progress", 0)
                    lost_for_good = kind == "lost" and rng.random() < self.spec.rates.get("lost_retries", 0)
                    record.failing_retries = 2 if lost_for_good else 0
                if kind == "lost":
                    answer = self._fault("lost", TRANSACT_WRITE, internal_error(), request)
                    return answer
            answer = committed
            return answer
        finally:
            with self._lock:
                if record.running:  # not committed: the token stays free, as on DynamoDB
                    self._tokens.pop(token, None)

    def _repeat(
        self, record: _Token, fingerprint: str, kind: str | None, request: dict[str, Any], rng: random.Random
    ) -> Answer | None:
        with self._lock:
            if record.fingerprint != fingerprint:
                self.counters.bump(self.counters.tokens, "mismatch")
                return error_answer("IdempotentParameterMismatchException", MSG_MISMATCH, message_key="Message")
            if record.running:
                self.counters.bump(self.counters.tokens, "duplicate_in_flight")
                return error_answer("TransactionInProgressException", MSG_IN_PROGRESS, message_key="Message")
            in_progress = record.in_progress_once
            record.in_progress_once = False
            failing = not in_progress and record.failing_retries > 0
            record.failing_retries -= int(failing)
            stored = record.answer
        if in_progress:
            answer = error_answer("TransactionInProgressException", MSG_IN_PROGRESS, message_key="Message")
            return self._fault("in_progress", TRANSACT_WRITE, answer, request)
        if failing:  # the connection is still bad: the SDK's retries fail too, nothing is done
            return self._fault("lost_retries", TRANSACT_WRITE, internal_error(), request)
        # The front door still throttles and fails a replay; it never collides (nothing is locked).
        if kind == "throttle":
            return self._fault(kind, TRANSACT_WRITE, throttled(TRANSACT_WRITE, request, rng), request)
        if kind == "server_error":
            return self._fault(kind, TRANSACT_WRITE, internal_error(), request)
        with self._lock:
            self.counters.bump(self.counters.tokens, "replayed")
        assert stored is not None
        return Answer(stored.status, list(stored.headers), stored.body)

    # batches ----------------------------------------------------------------------------------

    def _unprocessed(
        self, operation: str, request: dict[str, Any], headers: list[tuple[str, str]], rng: random.Random
    ) -> Answer | None:
        """Forward part of a batch and hand the rest back as ``UnprocessedItems`` /
        ``UnprocessedKeys``, as DynamoDB does when a partition is busy."""
        items = request.get("RequestItems")
        if not isinstance(items, dict) or not items:
            return self._forward(json.dumps(request).encode(), headers)
        entries: list[tuple[str, int]] = []
        for table, value in items.items():
            listing = value.get("Keys") if operation == "BatchGetItem" and isinstance(value, dict) else value
            if isinstance(listing, list):
                entries.extend((table, i) for i in range(len(listing)))
        if not entries:
            return self._forward(json.dumps(request).encode(), headers)
        held = set(rng.sample(entries, rng.randint(1, len(entries))))
        forwarded: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        for table, value in items.items():
            if operation == "BatchGetItem":
                keys = value.get("Keys", []) if isinstance(value, dict) else []
                keep = [k for i, k in enumerate(keys) if (table, i) not in held]
                back = [k for i, k in enumerate(keys) if (table, i) in held]
                if keep:
                    forwarded[table] = {**value, "Keys": keep}
                if back:
                    unprocessed[table] = {**value, "Keys": back}
            else:
                writes = value if isinstance(value, list) else []
                keep = [w for i, w in enumerate(writes) if (table, i) not in held]
                back = [w for i, w in enumerate(writes) if (table, i) in held]
                if keep:
                    forwarded[table] = keep
                if back:
                    unprocessed[table] = back
        result_key = "UnprocessedKeys" if operation == "BatchGetItem" else "UnprocessedItems"
        if forwarded:
            answer = self._forward(json.dumps({**request, "RequestItems": forwarded}).encode(), headers)
            if answer is None or answer.status != 200:
                return answer
            result = json.loads(answer.body or b"{}")
        else:
            result = {"Responses": {}} if operation == "BatchGetItem" else {}
        merged = dict(result.get(result_key) or {})
        for table, value in unprocessed.items():
            if operation == "BatchGetItem":
                before = merged.get(table, {**value, "Keys": []})
                merged[table] = {**before, "Keys": [*before.get("Keys", []), *value["Keys"]]}
            else:
                merged[table] = [*merged.get(table, []), *value]
        result[result_key] = merged
        return self._fault("unprocessed", operation, _json_answer(200, result), request)

    # forwarding -------------------------------------------------------------------------------

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            self._local.conn = None
            conn = http.client.HTTPConnection(self._backend_host, self._backend_port, timeout=60)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
            self._local.used = False
        return conn

    def _forward(self, body: bytes, headers: list[tuple[str, str]], count: bool = True) -> Answer | None:
        """Send the request on to the backend as it came (Host rewritten) and return its answer;
        None when the backend cannot be reached."""
        out = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "host"]
        out.append(("Host", self._backend_netloc))
        for attempt in range(2):
            try:
                conn = self._connection(fresh=attempt > 0)
            except OSError as exc:
                self._local.conn = None
                print(f"dynamodb-faults: backend {self.backend} unreachable: {exc}", file=sys.stderr, flush=True)
                return None
            reused = bool(getattr(self._local, "used", False))
            try:
                conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
                for name, value in out:
                    if name.lower() != "content-length":
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the backend had closed: the request never reached it.
                conn.close()
                self._local.conn = None
                if reused and attempt == 0:
                    continue
                print(f"dynamodb-faults: backend {self.backend} failed: {exc}", file=sys.stderr, flush=True)
                return None
            except OSError as exc:
                conn.close()
                self._local.conn = None
                print(f"dynamodb-faults: backend {self.backend} unreachable: {exc}", file=sys.stderr, flush=True)
                return None
            self._local.used = True
            if response.will_close:
                conn.close()
                self._local.conn = None
            if count:
                with self._lock:
                    self.counters.forwarded += 1
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            kept = [(k, v) for k, v in kept if k.lower() not in ("server", "date")]  # send_response adds them
            code = ""
            if response.status >= 400:
                with contextlib.suppress(ValueError, AttributeError):
                    code = str(json.loads(data).get("__type", "")).rsplit("#", 1)[-1]
            return Answer(response.status, kept, data, code)
        return None


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], injector: FaultInjector) -> None:
        self.injector = injector
        super().__init__(address, _ProxyHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall with no DNS.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        injector = self.server.injector
        if split.path.rstrip("/") == "/__faults":
            self._send(_json_answer(200, injector.snapshot()))
        elif split.path.rstrip("/") == "/__faults/events":
            after = parse_qs(split.query).get("after", ["0"])[0]
            try:
                events = injector.events(int(after))
            except ValueError:
                self._send(_json_answer(400, {"message": "after must be an integer"}))
                return
            self._send(_json_answer(200, {"events": events}))
        else:
            self._send(_json_answer(404, {"message": "the fault injector serves GET /__faults and POST (DynamoDB)"}))

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(_json_answer(400, {"message": "Content-Length is required"}))
            return
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target or "(none)"
        answer = self.server.injector.handle(operation, body, list(self.headers.items()))
        if answer is None:  # the backend is gone: so is this connection, as DynamoDB's would be
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


def start_in_thread(backend: str, spec: FaultSpec, host: str = HOST, port: int = 0) -> FaultInjector:
    """A running injector in front of ``backend``, served from a daemon thread."""
    return FaultInjector(backend, spec, host, port).start()


@contextlib.contextmanager
def injecting(backend: str, spec: FaultSpec) -> Iterator[FaultInjector]:
    """``with injecting(url, spec) as injector:`` -- stopped on exit."""
    injector = start_in_thread(backend, spec)
    try:
        yield injector
    finally:
        injector.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", required=True, help="the DynamoDB to put faults in front of (http://...)")
    parser.add_argument("--faults", default="default", help="the spec, as DYNAMODB_FAULTS (default: the preset)")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        spec = parse_spec(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    if spec is None:
        parser.error("--faults is off; nothing to inject")
    injector = FaultInjector(args.backend, spec, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=injector.shutdown).start())
    print(f"faults: {spec.describe()} in front of {injector.backend}; counters at {injector.url}/__faults", flush=True)
    print(f"ready {injector.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        injector.serve_forever()


if __name__ == "__main__":
    main()
