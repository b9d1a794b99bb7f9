"""The table's DynamoDB stream, emulated end to end: what Lambda's event source mappings do.

Why it exists: deployed, every function the template subscribes to the table's stream
(``Events: Type: DynamoDB``) is invoked by Lambda with batches of stream records. DynamoDB Local
and moto both serve the DynamoDB Streams API, but nothing invokes anything, so without this the
stream consumers (purging what a DELETE left, publishing domain events, pushing messages) would
never run locally. This module reads the table's stream and plays Lambda's part, for every such
function, read from ``template.yaml`` (a consumer added there runs locally with no other change):

- **Filtering** (``FilterCriteria``): each record is matched against the function's patterns
  before batching, as Lambda does; records that match none are dropped for that function. The
  patterns are EventBridge patterns; the subset understood here is in :func:`compile_pattern`,
  and the stack refuses to start on a pattern outside it (tests/test_streams.py checks every
  pattern in the template is understood), so a pattern is never silently misread.
- **Batching and order**: records reach each function in stream order, at most ``BatchSize``
  (default 100) per invocation, one batch at a time per function (Lambda's
  ``ParallelizationFactor`` 1), with a Lambda-shaped event (``{"Records": [...]}``, each record as
  Lambda builds it, ``eventSourceARN`` included). Each function has its own position in the
  stream: a slow consumer does not hold up the others, until it is ``MAX_QUEUED`` records
  behind: then the stream is not read further until it catches up. Lambda reads a shard a batch
  at a time; reading a backlog whole (10,000 seeded messages are 20,000 records) held every
  record in the gateway at once, and the gateway kept the memory (measured: 57 MB after 1,000
  stored messages, 82 MB after 10,000).
- **Failures**: with ``FunctionResponseTypes: [ReportBatchItemFailures]``, the batch is retried
  from the first record the function reports failed (Lambda's checkpoint); a function error
  retries the whole batch, halved first when ``BisectBatchOnFunctionError`` is set. After
  ``MaximumRetryAttempts`` retries (unset: Lambda retries until the record expires; locally 10)
  the records go to the "dead letters" shown at ``GET /local/stream`` (deployed: the
  ``OnFailure`` destination) and the stream moves on.
- **Where to start**: ``StartingPosition: LATEST`` starts at the end of the stream when the stack
  starts (before it says ``ready``), ``TRIM_HORIZON`` at the oldest record kept.

Waiting for the stream (tests, scripts): ``GET /local/stream?drained`` (optionally
``&timeout=<seconds>``, default 60) answers once every change made before the request has been
read and every consumer has finished with it, and with whatever those consumers wrote in turn:
``200 {"drained": true, ...}``, or ``503 {"drained": false, ...}`` when the timeout passes first.
``GET /local/stream`` alone answers the same state at once: per consumer its records, invocations,
retries and dead letters. Latency: the stream is polled every ``POLL_INTERVAL_S`` while the
stack is in use (and at once when someone waits for it), so a change its functions make reaches
the consumers well within a second on an idle machine; an idle stack polls every
``IDLE_POLL_INTERVAL_S`` (``StreamPoller._read_loop``).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from local_stack import template as cfn
from local_stack import ttl

POLL_INTERVAL_S = 0.25  # Lambda polls a DynamoDB stream's shards four times a second
IDLE_POLL_INTERVAL_S = 2.0  # the wait between two polls of an idle stack (StreamPoller._read_loop)
QUIET_AFTER_S = 2.0  # idle: nothing read, and no function of the stack run, for this long
DESCRIBE_INTERVAL_S = 2.0  # new shards (DynamoDB rolls shards over) are looked for this often
REPORT_FAILURE_AFTER_S = 5.0  # a stream read failing this long is reported (StreamPoller._read_failed)
DEFAULT_BATCH_SIZE = 100  # Lambda's default for DynamoDB streams
LOCAL_MAX_RETRIES = 10  # MaximumRetryAttempts unset (-1) means "until the record expires" in Lambda
MAX_DEAD_LETTERS = 1000
MAX_QUEUED = 1000  # records read ahead for one consumer; the reader waits while one has more
DRAIN_PATH = "/local/stream"
DEFAULT_DRAIN_TIMEOUT_S = 60.0
MAX_DRAIN_TIMEOUT_S = 600.0
THROTTLED = "throttled"


# --- FilterCriteria ---------------------------------------------------------------------------


class UnsupportedPattern(ValueError):
    """A filter pattern uses EventBridge syntax this emulation does not implement."""


Matcher = Callable[[Any, bool], bool]  # (value in the record, whether the key is present)


def _leaf(spec: Any, where: str) -> Matcher:
    """One element of a pattern's value list. Understood: an exact string, number, boolean or
    null; ``{"prefix": "..."}``; ``{"exists": true|false}``; ``{"anything-but": value|[values]}``
    (exact values only). Anything else (``numeric``, ``suffix``, ``wildcard``,
    ``equals-ignore-case``, ``cidr``, ``$or``...) raises ``UnsupportedPattern``."""
    if spec is None or isinstance(spec, str | int | float | bool):
        return lambda value, present: present and _equal(value, spec)
    if isinstance(spec, dict) and len(spec) == 1:
        ((op, arg),) = spec.items()
        if op == "prefix" and isinstance(arg, str):
            return lambda value, present: present and isinstance(value, str) and value.startswith(arg)
        if op == "exists" and isinstance(arg, bool):
            return lambda value, present: present == arg
        if op == "anything-but":
            values = arg if isinstance(arg, list) else [arg]
            if all(v is None or isinstance(v, str | int | float | bool) for v in values):
                return lambda value, present: present and not any(_equal(value, v) for v in values)
    raise UnsupportedPattern(f"{where}: {json.dumps(spec)} is not understood by the local stream emulation")


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return float(value) == float(expected)
    return bool(value == expected)


def compile_pattern(pattern: Any, where: str = "pattern") -> Callable[[dict[str, Any]], bool]:
    """An EventBridge-style filter pattern (as Lambda's ``FilterCriteria`` uses it) as a
    predicate on a Lambda stream record. Keys AND together; a key's list matches if any element
    does; a record value that is a list matches if any of its elements does; nested objects
    match nested fields. Raises ``UnsupportedPattern`` for syntax outside the subset."""
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except ValueError as exc:
            raise UnsupportedPattern(f"{where}: not JSON: {exc}") from exc
    if not isinstance(pattern, dict) or not pattern:
        raise UnsupportedPattern(f"{where}: a pattern is a non-empty JSON object")
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for key, spec in pattern.items():
        if key.startswith("$"):
            raise UnsupportedPattern(f"{where}: {key} is not understood by the local stream emulation")
        if isinstance(spec, dict):
            checks.append(_nested(key, compile_pattern(spec, f"{where}.{key}")))
        elif isinstance(spec, list) and spec:
            checks.append(_listed(key, [_leaf(element, f"{where}.{key}") for element in spec]))
        else:
            raise UnsupportedPattern(f"{where}.{key}: a value is a non-empty list or an object")
    return lambda record: all(check(record) for check in checks)


def _nested(key: str, inner: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    # A missing object is matched as an empty one: only ``{"exists": false}`` leaves pass on it.
    return lambda record: inner(record[key] if isinstance(record.get(key), dict) else {})


def _listed(key: str, leaves: list[Matcher]) -> Callable[[dict[str, Any]], bool]:
    def check(record: dict[str, Any]) -> bool:
        present = key in record
        value = record.get(key)
        values = value if isinstance(value, list) and value else [value]
        return any(leaf(v, present) for leaf in leaves for v in values)

    return check


# --- the template's stream consumers ----------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    """One ``Events: Type: DynamoDB`` source of a template function (an event source mapping)."""

    function: str
    module: str
    handler: str
    timeout_s: float
    memory_mb: int
    batch_size: int
    starting_position: str
    report_failures: bool
    max_retries: int
    bisect: bool
    patterns: tuple[str, ...]
    filters: tuple[Callable[[dict[str, Any]], bool], ...] = field(compare=False, repr=False)

    def accepts(self, record: dict[str, Any]) -> bool:
        return not self.filters or any(match(record) for match in self.filters)


def consumers(template: dict[str, Any] | None = None) -> list[Consumer]:
    """Every DynamoDB stream source in the template, with its filters compiled (raises
    ``UnsupportedPattern`` for a pattern outside the understood subset)."""
    from local_stack.gateway import function_configs

    template = template or cfn.load()
    configs = function_configs(template)
    found = []
    for name, res in cfn.functions(template).items():
        props = res["Properties"]
        module, handler = props["Handler"].rsplit(".", 1)
        for source_name, source in (props.get("Events") or {}).items():
            if source.get("Type") != "DynamoDB":
                continue
            spec = source.get("Properties", {})
            patterns = tuple(
                f["Pattern"] if isinstance(f["Pattern"], str) else json.dumps(f["Pattern"])
                for f in (spec.get("FilterCriteria") or {}).get("Filters", [])
            )
            retries = int(spec.get("MaximumRetryAttempts", -1))
            found.append(
                Consumer(
                    function=name,
                    module=module,
                    handler=handler,
                    timeout_s=configs[name].timeout_s,
                    memory_mb=configs[name].memory_mb,
                    batch_size=int(spec.get("BatchSize", DEFAULT_BATCH_SIZE)),
                    starting_position=str(spec.get("StartingPosition", "LATEST")),
                    report_failures="ReportBatchItemFailures" in (spec.get("FunctionResponseTypes") or []),
                    max_retries=LOCAL_MAX_RETRIES if retries < 0 else retries,
                    bisect=bool(spec.get("BisectBatchOnFunctionError", False)),
                    patterns=patterns,
                    filters=tuple(
                        compile_pattern(p, f"{name}.Events.{source_name}.FilterCriteria[{i}]")
                        for i, p in enumerate(patterns)
                    ),
                )
            )
    return found


# --- records as Lambda delivers them ----------------------------------------------------------


def lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A record from ``GetRecords`` (boto3's shape) as Lambda puts it in the event: the
    creation time as epoch seconds, ``eventSourceARN`` added, the region Lambda's."""
    dynamodb = dict(record["dynamodb"])
    for name in ("Keys", "NewImage", "OldImage"):
        if name in dynamodb:
            dynamodb[name] = {attr: _typed(value) for attr, value in dynamodb[name].items()}
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    # DynamoDB Local and moto write no identity; the local TTL emulation knows its own deletions.
    identity = record.get("userIdentity") or ttl.identity_of(record)
    if identity:
        out["userIdentity"] = identity
    return out


def _typed(value: Any) -> Any:
    """An attribute value as DynamoDB (and so Lambda) writes it. DynamoDB Local's stream writes an
    empty map as ``{}`` where DynamoDB writes ``{"M": {}}`` (the item itself reads back right)."""
    if value == {}:
        return {"M": {}}
    if isinstance(value, dict) and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind == "M" and isinstance(inner, dict):
            return {"M": {k: _typed(v) for k, v in inner.items()}}
        if kind == "L" and isinstance(inner, list):
            return {"L": [_typed(v) for v in inner]}
    return value


# --- the poller -------------------------------------------------------------------------------


Invoke = Callable[[Consumer, dict[str, Any]], Any]


@dataclass
class _Shard:
    shard_id: str
    parent: str | None
    iterator: str | None = None
    last_sequence: str | None = None
    finished: bool = False


class _ConsumerState:
    """One consumer's queue and counters; its thread delivers batches from the queue."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.queue: deque[dict[str, Any]] = deque()
        self.busy = False
        self.records = 0
        self.filtered_out = 0
        self.invocations = 0
        self.retries = 0
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=MAX_DEAD_LETTERS)
        self.throttled = 0
        self.dead_lettered = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "function": self.consumer.function,
            "batchSize": self.consumer.batch_size,
            "filters": list(self.consumer.patterns),
            "records": self.records,
            "filteredOut": self.filtered_out,
            "queued": len(self.queue),
            "invocations": self.invocations,
            "retries": self.retries,
            "throttled": self.throttled,
            "deadLettered": self.dead_lettered,
            "deadLetters": list(self.dead_letters)[-20:],
        }


class StreamPoller:
    """Reads the table's stream and delivers each record to every consumer that accepts it."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        consumer_list: list[Consumer],
        invoke: Invoke,
        region: str = "us-east-1",
        log: TextIO | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        idle_poll_interval_s: float = IDLE_POLL_INTERVAL_S,
        quiet_after_s: float = QUIET_AFTER_S,
        report_failure_after_s: float = REPORT_FAILURE_AFTER_S,
    ) -> None:
        import sys

        self.client = streams_client
        self.stream_arn = stream_arn
        self.region = region
        self.invoke = invoke
        self.log = log or sys.stderr
        self.poll_interval_s = poll_interval_s
        self.states = [_ConsumerState(c) for c in consumer_list]
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.idle_poll_interval_s = idle_poll_interval_s
        self.quiet_after_s = quiet_after_s
        self.report_failure_after_s = report_failure_after_s
        self._failing_since: float | None = None  # when the reads began to fail, if they do
        self._failure_reported = False
        self._read_failures = 0
        self._interval = poll_interval_s  # the wait after the latest pass
        self._idling = False  # waiting out more than poll_interval_s
        self._last_active = time.monotonic()  # when something was last read, or a function ran
        self.functions_running: Callable[[], int] = lambda: 0
        """How many of the stack's functions are running (``WorkerPool.running``)."""
        self._passes = 0  # complete read passes over every shard
        self._activity = 0  # records read + invocations finished: drained when it stops moving
        self._read = 0
        self._threads: list[threading.Thread] = []
        self._described = 0.0

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Position every consumer (``LATEST``: the end of the stream now), then poll."""
        self._describe(initial=True)
        self._threads.append(threading.Thread(target=self._read_loop, name="stream-reader", daemon=True))
        for state in self.states:
            self._threads.append(
                threading.Thread(
                    target=self._deliver_loop, args=(state,), name=f"stream-{state.consumer.function}", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)

    # reading --------------------------------------------------------------------------------

    def _describe(self, initial: bool = False) -> None:
        """Learn the stream's shards. At start, open shards are positioned at ``LATEST`` unless
        every consumer wants ``TRIM_HORIZON``; shards found later were born after the start and
        are read from their beginning."""
        horizon = bool(self.states) and all(s.consumer.starting_position == "TRIM_HORIZON" for s in self.states)
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self.client.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self._shards:
                    continue
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                entry = _Shard(shard_id, shard.get("ParentShardId"))
                if initial and not horizon:
                    if closed:
                        entry.finished = True
                    else:
                        entry.iterator = self._iterator(shard_id, "LATEST")
                else:
                    entry.iterator = self._iterator(shard_id, "TRIM_HORIZON")
                self._shards[shard_id] = entry
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last
        self._described = time.monotonic()

    def _iterator(self, shard_id: str, kind: str, sequence: str | None = None) -> str | None:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
        if sequence is not None:
            kwargs["SequenceNumber"] = sequence
        iterator: str | None = self.client.get_shard_iterator(**kwargs).get("ShardIterator")
        return iterator

    def _readable(self) -> list[_Shard]:
        """Shards to read now, parents before children (a child waits until its parent is
        finished, so each item's records stay in order)."""
        return [
            s
            for s in self._shards.values()
            if not s.finished
            and s.iterator
            and (s.parent is None or s.parent not in self._shards or self._shards[s.parent].finished)
        ]

    def _read_pass(self) -> int:
        """Read every readable shard until it has nothing more; returns the records read."""
        if time.monotonic() - self._described > DESCRIBE_INTERVAL_S:
            self._describe()
        read = 0
        for shard in self._readable():
            while shard.iterator and not self._stop.is_set():
                self._wait_for_room()
                if self._stop.is_set():
                    break
                try:
                    page = self.client.get_records(ShardIterator=shard.iterator, Limit=MAX_QUEUED)
                except self.client.exceptions.ExpiredIteratorException:
                    kind = "AFTER_SEQUENCE_NUMBER" if shard.last_sequence else "TRIM_HORIZON"
                    shard.iterator = self._iterator(shard.shard_id, kind, shard.last_sequence)
                    continue
                records = page.get("Records", [])
                shard.iterator = page.get("NextShardIterator")
                if shard.iterator is None:
                    shard.finished = True
                if records:
                    shard.last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
                    self._dispatch([lambda_record(r, self.stream_arn, self.region) for r in records])
                    read += len(records)
                else:
                    break
        return read

    def _wait_for_room(self) -> None:
        """Until every consumer has fewer than ``MAX_QUEUED`` records waiting (or the stack stops):
        what is read ahead is bounded, however long the backlog."""
        with self._lock:
            while not self._stop.is_set() and any(len(s.queue) >= MAX_QUEUED for s in self.states):
                self._lock.wait()

    def _dispatch(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._read += len(records)
            self._activity += len(records)
            for state in self.states:
                for record in records:
                    if state.consumer.accepts(record):
                        state.queue.append(record)
                        state.records += 1
                    else:
                        state.filtered_out += 1
            self._lock.notify_all()

    def nudge(self) -> None:
        """A function of the stack started or ended (``WorkerPool.on_activity``): what it writes
        is on the stream at once, so an idle poller polls now, and at its busy rate again."""
        self._last_active = time.monotonic()
        if self._idling:
            self._wake.set()

    def _read_loop(self) -> None:
        """Poll every ``poll_interval_s`` while the stack is in use. Once it is idle (nothing read
        and no function run for ``quiet_after_s``) it waits ``idle_poll_interval_s`` instead: an
        idle stack's polls cost about 4% of a core (DynamoDB Local's
        and the gateway's CPU), and the tests keep several stacks, most of them idle most of the
        time. A request to the stack (a function run: :meth:`nudge`) or a wait for the stream
        (``drained``) ends an idle wait at once; only a write made to the table from outside the
        stack can wait longer to be read, up to ``idle_poll_interval_s``."""
        while not self._stop.is_set():
            read = 0
            try:
                read = self._read_pass()
            except Exception:  # DynamoDB unreachable for a moment: try again at the next poll
                if self._stop.is_set():
                    return
                self._read_failed(time.monotonic(), traceback.format_exc().rstrip())
            else:
                self._read_worked()
            with self._lock:
                self._passes += 1
                self._lock.notify_all()
            active = read > 0 or self.functions_running() > 0
            if active:
                self._last_active = time.monotonic()
            # Set before _last_active is read: a nudge after this wakes the wait (at worst a pass
            # early), one before it is seen below.
            self._idling = True
            if active or time.monotonic() - self._last_active < self.quiet_after_s:
                self._interval = self.poll_interval_s
                self._idling = False
            else:
                self._interval = max(self.idle_poll_interval_s, self.poll_interval_s)
            self._wake.wait(self._interval)
            self._wake.clear()
            self._idling = False

    def _read_failed(self, now: float, why: str) -> None:
        """A read pass failed. Reported, with why, once the reads have failed for
        ``report_failure_after_s``, and once per streak: a blip is not news, and one is expected
        when the stack stops on Ctrl-C, which reaches DynamoDB Local (in the same process group)
        before the stack has told this reader to stop. Every failure is counted
        (``GET /local/stream``: ``readFailures``)."""
        with self._lock:
            self._read_failures += 1
        if self._failing_since is None:
            self._failing_since = now
        failing_for = now - self._failing_since
        if not self._failure_reported and failing_for >= self.report_failure_after_s:
            self._failure_reported = True
            self._note(f"stream read failing for {failing_for:.0f} s:\n{why}")

    def _read_worked(self) -> None:
        if self._failure_reported:
            self._note("stream read works again")
        self._failing_since, self._failure_reported = None, False

    # delivering -----------------------------------------------------------------------------

    def _deliver_loop(self, state: _ConsumerState) -> None:
        consumer = state.consumer
        while True:
            with self._lock:
                while not state.queue and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                batch = [state.queue.popleft() for _ in range(min(consumer.batch_size, len(state.queue)))]
                state.busy = True
            try:
                self._deliver(state, batch)
            except Exception:  # the emulator's own bug: say so, and keep the stream moving
                self._note(f"stream delivery to {consumer.function} failed:\n" + traceback.format_exc().rstrip())
            finally:
                with self._lock:
                    state.busy = False
                    self._activity += 1
                    self._lock.notify_all()

    def _deliver(self, state: _ConsumerState, batch: list[dict[str, Any]]) -> None:
        """One batch, as Lambda's event source mapping handles it (see the module docstring)."""
        consumer = state.consumer
        attempts = 0
        while batch and not self._stop.is_set():
            failed_from, why = self._invoke_once(state, batch)
            if failed_from is None:
                return
            if why == THROTTLED:  # no worker free: not the function's failure, so not a retry
                self._stop.wait(0.2)
                continue
            if failed_from == 0 and why != "reported" and consumer.bisect and len(batch) > 1:
                half = len(batch) // 2
                self._deliver(state, batch[:half])
                self._deliver(state, batch[half:])
                return
            batch = batch[failed_from:]
            attempts += 1
            if attempts > consumer.max_retries:
                self._dead_letter(state, batch, why)
                return
            with self._lock:
                state.retries += 1
            self._stop.wait(min(1.0, 0.05 * 2**attempts))  # Lambda backs off between retries too

    def _invoke_once(self, state: _ConsumerState, batch: list[dict[str, Any]]) -> tuple[int | None, str]:
        """Invoke once; ``(None, "")`` when every record succeeded, else the index of the first
        record to retry from and why."""
        consumer = state.consumer
        with self._lock:
            state.invocations += 1
        from local_stack.workers import WorkerBusy

        try:
            result = self.invoke(consumer, {"Records": batch})
        except WorkerBusy:
            # Every worker the stack may run is busy (LOCAL_MAX_WORKERS): Lambda throttled the
            # invocation. The batch waits and is tried again, without counting as a retry.
            with self._lock:
                state.throttled += 1
            return 0, THROTTLED
        except Exception as exc:
            why = f"function error: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
            if self._stop.is_set():  # what the function calls may be stopping too: one line, no traceback
                said = f"a batch of {len(batch)} stream records failed as the stack stopped ({why})"
                self._note(f"{consumer.function}: {said}")
            else:
                self._note(f"{consumer.function} failed on a batch of {len(batch)} stream records: {exc}")
            return 0, why
        if not consumer.report_failures or not isinstance(result, dict):
            return None, ""
        failures = result.get("batchItemFailures") or []
        if not failures:
            return None, ""
        index = {record["dynamodb"]["SequenceNumber"]: i for i, record in enumerate(batch)}
        positions = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in index:  # Lambda treats an unknown identifier as a failed batch
                return 0, f"batchItemFailures names {identifier!r}, which is not in the batch"
            positions.append(index[identifier])
        return min(positions), "reported"

    def _dead_letter(self, state: _ConsumerState, batch: list[dict[str, Any]], why: str) -> None:
        first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
        self._note(f"{state.consumer.function}: {len(batch)} stream records given up after retries ({why})")
        with self._lock:
            state.dead_lettered += len(batch)
            state.dead_letters.append(
                {"firstSequenceNumber": first, "lastSequenceNumber": last, "records": len(batch), "reason": why}
            )

    # waiting for the stream -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "streamArn": self.stream_arn,
                "recordsRead": self._read,
                "readPasses": self._passes,
                "readFailures": self._read_failures,
                "pollIntervalSeconds": self._interval,
                "consumers": [s.snapshot() for s in self.states],
            }

    def _next_pass(self, deadline: float) -> bool:
        """Wait for a read pass that starts after this call (woken at once)."""
        with self._lock:
            target = self._passes + 2  # the pass under way may have started before the call
        self._wake.set()
        with self._lock:
            while self._passes < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                if self._passes == target - 1:
                    self._wake.set()
                self._lock.wait(min(remaining, 0.05))
        return True

    def wait_drained(self, timeout_s: float) -> bool:
        """True once every change made before the call, and whatever the consumers wrote in
        turn, has been read and handled by every consumer; False when ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                before = self._activity
            if not self._next_pass(deadline):
                return False
            with self._lock:
                while any(s.queue or s.busy for s in self.states):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stop.is_set():
                        return False
                    self._lock.wait(remaining)
                if self._activity == before:
                    return True

    def _note(self, line: str) -> None:
        print(line, file=self.log, flush=True)


# --- HTTP: GET /local/stream ------------------------------------------------------------------


def serve(poller: StreamPoller, request: Any) -> Any:
    """``GET /local/stream[?drained[&timeout=s]]`` (see the module docstring); None otherwise."""
    from local_stack.gateway import error_response, json_response

    split = urlsplit(request.target)
    if split.path != DRAIN_PATH:
        return None
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", f"{DRAIN_PATH} answers GET only.", [("Allow", "GET")])
    query = parse_qs(split.query, keep_blank_values=True)
    if "drained" not in query:
        return json_response(200, poller.state())
    try:
        timeout = float(query.get("timeout", [str(DEFAULT_DRAIN_TIMEOUT_S)])[0])
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout <= MAX_DRAIN_TIMEOUT_S:
        return error_response(
            400, "validation_error", f"timeout is a number of seconds from 0 to {MAX_DRAIN_TIMEOUT_S:g}."
        )
    drained = poller.wait_drained(timeout)
    return json_response(200 if drained else 503, {"drained": drained, **poller.state()})


# --- starting it with the stack -----------------------------------------------------------------


def enable_stream(client: Any, table_name: str, template: dict[str, Any] | None = None) -> str:
    """The table's stream ARN, after turning the stream on (with the template's view type) if
    the table has none (a table from before, kept in ``LOCAL_DATA_DIR`` or at
    ``DYNAMODB_ENDPOINT``)."""
    spec = cfn.stream_specification(template)
    table = client.describe_table(TableName=table_name)["Table"]
    current = table.get("StreamSpecification") or {}
    if not current.get("StreamEnabled"):
        client.update_table(TableName=table_name, StreamSpecification=spec)
        client.get_waiter("table_exists").wait(TableName=table_name)
        table = client.describe_table(TableName=table_name)["Table"]
    elif current.get("StreamViewType") != spec["StreamViewType"]:
        raise RuntimeError(
            f"table {table_name}'s stream shows {current.get('StreamViewType')}, the template asks for "
            f"{spec['StreamViewType']}: delete the table (or its LOCAL_DATA_DIR) to recreate it"
        )
    return str(table["LatestStreamArn"])


def start(
    dynamodb_endpoint: str,
    table_name: str,
    invoke: Invoke,
    region: str = "us-east-1",
    template: dict[str, Any] | None = None,
    log: TextIO | None = None,
) -> StreamPoller:
    """Turn the table's stream on if needed and start delivering it to the template's consumers."""
    import boto3

    template = template or cfn.load()
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name=region)
    arn = enable_stream(dynamodb, table_name, template)
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint, region_name=region)
    poller = StreamPoller(streams, arn, consumers(template), invoke, region=region, log=log)
    poller.start()
    return poller


def pool_invoker(pool: Any) -> Invoke:
    """Invoke a consumer through the local stack's worker pool (``local_stack.workers``)."""

    def invoke(consumer: Consumer, event: dict[str, Any]) -> Any:
        return pool.invoke(
            consumer.module, consumer.handler, consumer.function, consumer.timeout_s, event, consumer.memory_mb
        )

    return invoke
