"""The local stream emulation (local_stack/streams.py): filters, batches, order, retries, drain.

The filter tests pin the EventBridge subset the emulation understands and prove every pattern in
template.yaml is inside it. The poller tests read a real stream (moto's, in process) and invoke a
recording function in place of the worker pool, so what Lambda's event source mapping promises
(order, batch size, retry from the reported failure, dead letters, bisection) is checked on what
the function received.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from local_stack import streams
from local_stack import template as cfn
from local_stack.streams import Consumer, StreamPoller, UnsupportedPattern, compile_pattern


def record(event_name: str = "INSERT", sk: str = "SESSION#1", **new: Any) -> dict[str, Any]:
    image = {"PK": {"S": "USER#u"}, "SK": {"S": sk}, **{k: {"S": v} for k, v in new.items()}}
    body: dict[str, Any] = {"Keys": {"PK": image["PK"], "SK": image["SK"]}}
    if event_name != "REMOVE":
        body["NewImage"] = image
    if event_name != "INSERT":
        body["OldImage"] = image
    return {"eventName": event_name, "dynamodb": body}


def test_every_filter_pattern_in_the_template_is_understood() -> None:
    template = cfn.load()
    raw = [
        (name, f["Pattern"])
        for name, res in cfn.functions(template).items()
        for source in (res["Properties"].get("Events") or {}).values()
        if source["Type"] == "DynamoDB"
        for f in (source["Properties"].get("FilterCriteria") or {}).get("Filters", [])
    ]
    assert raw, "the template has stream consumers with filters"
    for name, pattern in raw:
        compile_pattern(pattern, name)  # raises UnsupportedPattern for syntax outside the subset
    found = {c.function: c for c in streams.consumers(template)}
    assert {name for name, _ in raw} <= set(found)
    purge = found["PurgeDeletedFunction"]
    assert purge.batch_size == 25 and purge.report_failures and purge.bisect and purge.max_retries == 10
    assert purge.accepts(record("REMOVE", "SESSION#1")) and purge.accepts(record("REMOVE", "CHAT#1"))
    assert not purge.accepts(record("REMOVE", "MSG#1#0000000001"))
    assert not purge.accepts(record("MODIFY", "SESSION#1"))


@pytest.mark.parametrize(
    ("pattern", "matching", "other"),
    [
        ({"eventName": ["REMOVE"]}, record("REMOVE"), record("INSERT")),
        ({"eventName": ["INSERT", "MODIFY"]}, record("MODIFY"), record("REMOVE")),
        (
            {"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "CHAT#"}]}}}},
            record(sk="CHAT#x"),
            record(sk="MSG#CHAT#x"),
        ),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"exists": True}]}}}}, record(status="a"), record()),
        ({"dynamodb": {"NewImage": {"status": {"S": [{"exists": False}]}}}}, record(), record(status="a")),
        (
            {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["a"]}]}}}},
            record(status="b"),
            record(status="a"),
        ),
        # Every key must match: the event name alone is not enough.
        (
            {"eventName": ["REMOVE"], "dynamodb": {"Keys": {"SK": {"S": [{"prefix": "S"}]}}}},
            record("REMOVE"),
            record("REMOVE", "CHAT#1"),
        ),
        # A nested object the record lacks does not match (REMOVE has no NewImage).
        ({"dynamodb": {"NewImage": {"SK": {"S": [{"prefix": ""}]}}}}, record("INSERT"), record("REMOVE")),
    ],
    ids=["exact", "exact-any-of", "prefix", "exists", "not-exists", "anything-but", "and", "nested-missing"],
)
def test_patterns_match_as_lambda_filters_do(
    pattern: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    match = compile_pattern(json.dumps(pattern))
    assert match(matching)
    assert not match(other)


@pytest.mark.parametrize(
    "pattern",
    [
        {"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 0]}]}}}},
        {"dynamodb": {"Keys": {"SK": {"S": [{"suffix": "#1"}]}}}},
        {"$or": [{"eventName": ["REMOVE"]}]},
        {"eventName": "REMOVE"},
        {"eventName": []},
        "not json",
    ],
    ids=["numeric", "suffix", "or", "bare-value", "empty-list", "not-json"],
)
def test_syntax_outside_the_subset_is_refused_not_misread(pattern: Any) -> None:
    with pytest.raises(UnsupportedPattern):
        compile_pattern(pattern if isinstance(pattern, str) else json.dumps(pattern))


# --- the poller, on moto's stream -------------------------------------------------------------


def consumer(
    name: str = "Fn",
    batch_size: int = 2,
    patterns: tuple[str, ...] = (),
    max_retries: int = 2,
    bisect: bool = False,
    position: str = "TRIM_HORIZON",
) -> Consumer:
    return Consumer(
        function=name,
        module="m",
        handler="h",
        timeout_s=3,
        memory_mb=128,
        batch_size=batch_size,
        starting_position=position,
        report_failures=True,
        max_retries=max_retries,
        bisect=bisect,
        patterns=patterns,
        filters=tuple(compile_pattern(p) for p in patterns),
    )


def put(table: tuple[Any, str, Any, str], sk: str) -> None:
    table[0].put_item(TableName=table[3], Item={"PK": {"S": "USER#u"}, "SK": {"S": sk}})


Handler = Callable[[Consumer, list[str]], Any]


def run_poller(
    stream_table: tuple[Any, str, Any, str],
    consumers: list[Consumer],
    handler: Handler,
    writes: list[str],
    later: tuple[str, ...] = (),
) -> tuple[StreamPoller, list[tuple[str, list[str]]]]:
    _, arn, streams_client, _ = stream_table
    calls: list[tuple[str, list[str]]] = []
    lock = threading.Lock()

    def invoke(c: Consumer, event: dict[str, Any]) -> Any:
        sks = [r["dynamodb"]["Keys"]["SK"]["S"] for r in event["Records"]]
        assert all(r["eventSourceARN"] == arn and r["eventSource"] == "aws:dynamodb" for r in event["Records"])
        with lock:
            calls.append((c.function, sks))
        return handler(c, [r["dynamodb"]["SequenceNumber"] for r in event["Records"]])

    # Written before the poller starts, read from the stream's start: whole batches, deterministically.
    for sk in writes:
        put(stream_table, sk)
    poller = StreamPoller(streams_client, arn, consumers, invoke, poll_interval_s=0.05)
    poller.start()
    try:
        assert poller.wait_drained(60)
        for sk in later:
            put(stream_table, sk)
        assert poller.wait_drained(60)
    finally:
        poller.stop()
    return poller, calls


def ok(c: Consumer, sequences: list[str]) -> Any:
    return {"batchItemFailures": []}


def test_records_reach_each_consumer_in_order_in_batches_after_its_filter(stream_table: Any) -> None:
    only_chats = consumer(
        "Chats", batch_size=3, patterns=('{"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "CHAT#"}]}}}}',)
    )
    writes = [f"CHAT#{i}" if i % 2 else f"SESSION#{i}" for i in range(10)]
    poller, calls = run_poller(stream_table, [consumer("All", batch_size=2), only_chats], ok, writes)
    seen = {name: [sk for n, sks in calls if n == name for sk in sks] for name in ("All", "Chats")}
    assert seen["All"] == writes
    assert seen["Chats"] == [w for w in writes if w.startswith("CHAT#")]
    assert all(len(sks) <= (2 if name == "All" else 3) for name, sks in calls)
    state = {c["function"]: c for c in poller.state()["consumers"]}
    assert state["Chats"]["filteredOut"] == 5 and state["All"]["records"] == 10


def test_a_reported_failure_is_retried_from_that_record(stream_table: Any) -> None:
    failed: set[str] = set()

    def fail_second_once(c: Consumer, sequences: list[str]) -> Any:
        if len(sequences) == 3 and not failed:
            failed.add(sequences[1])
            return {"batchItemFailures": [{"itemIdentifier": sequences[1]}]}
        return ok(c, sequences)

    poller, calls = run_poller(stream_table, [consumer(batch_size=3)], fail_second_once, ["A", "B", "C"])
    assert calls[:2] == [("Fn", ["A", "B", "C"]), ("Fn", ["B", "C"])]
    assert poller.state()["consumers"][0]["retries"] == 1


def test_a_failing_batch_is_bisected_then_dead_lettered_after_its_retries(stream_table: Any) -> None:
    bad: list[str] = []  # the second record's sequence number, known once the first batch comes

    def fail_on_second(c: Consumer, sequences: list[str]) -> Any:
        if not bad:
            bad.append(sequences[1])
        if bad[0] in sequences:
            raise RuntimeError("boom")
        return ok(c, sequences)

    poller, calls = run_poller(
        stream_table, [consumer(batch_size=2, max_retries=1, bisect=True)], fail_on_second, ["A", "B"]
    )
    assert calls == [("Fn", ["A", "B"]), ("Fn", ["A"]), ("Fn", ["B"]), ("Fn", ["B"])]  # B: tried, retried once
    state = poller.state()["consumers"][0]
    assert state["deadLettered"] == 1 and state["deadLetters"][0]["reason"].startswith("function error")


def test_drained_waits_for_what_a_consumer_writes_in_turn(stream_table: Any) -> None:
    chats = consumer("Chats", batch_size=1, patterns=('{"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "CHAT#"}]}}}}',))
    msgs = consumer("Msgs", batch_size=10, patterns=('{"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "MSG#"}]}}}}',))
    written: list[str] = []

    def chats_write_a_message(c: Consumer, sequences: list[str]) -> Any:
        if c.function == "Chats":  # one record per batch: one message per chat
            written.append(f"MSG#{len(written)}")
            put(stream_table, written[-1])
        return ok(c, sequences)

    _, calls = run_poller(stream_table, [chats, msgs], chats_write_a_message, ["CHAT#1", "CHAT#2"])
    assert sorted(sk for name, sks in calls if name == "Msgs" for sk in sks) == ["MSG#0", "MSG#1"]


def test_latest_starts_at_the_end_of_the_stream(stream_table: Any) -> None:
    _, calls = run_poller(stream_table, [consumer(position="LATEST")], ok, ["BEFORE"], later=("AFTER",))
    assert calls == [("Fn", ["AFTER"])]


def test_a_throttled_batch_waits_for_a_worker_and_is_not_a_retry(stream_table: Any) -> None:
    from local_stack.workers import WorkerBusy

    busy = [2]  # the first two invocations find no free worker

    def throttled_then_ok(c: Consumer, sequences: list[str]) -> Any:
        if busy[0]:
            busy[0] -= 1
            raise WorkerBusy("all workers busy")
        return ok(c, sequences)

    poller, calls = run_poller(stream_table, [consumer(batch_size=2, max_retries=0)], throttled_then_ok, ["A", "B"])
    assert calls == [("Fn", ["A", "B"])] * 3
    state = poller.state()["consumers"][0]
    assert state["throttled"] == 2 and state["retries"] == 0 and state["deadLettered"] == 0


def test_what_is_read_ahead_for_a_consumer_is_bounded(stream_table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog is read as the consumer works through it, not whole: while the consumer is busy
    with its first record, the reader stops at ``MAX_QUEUED`` waiting records (one read adds at
    most as many), so the gateway's memory stays flat whatever was stored; every record still
    arrives, in order."""
    monkeypatch.setattr(streams, "MAX_QUEUED", 3)
    waiting: list[int] = []
    go = threading.Event()  # the reader waits for room, or (were it unbounded) has read everything
    dispatch, wait_for_room = StreamPoller._dispatch, StreamPoller._wait_for_room

    def counted(self: StreamPoller, records: list[dict[str, Any]]) -> None:
        dispatch(self, records)
        waiting.append(max(len(s.queue) for s in self.states))
        if sum(s.records for s in self.states) == 20:
            go.set()

    def watched(self: StreamPoller) -> None:
        if any(len(s.queue) >= streams.MAX_QUEUED for s in self.states):
            go.set()
        wait_for_room(self)

    def busy_first(c: Consumer, sequences: list[str]) -> Any:
        go.wait()
        return ok(c, sequences)

    monkeypatch.setattr(StreamPoller, "_dispatch", counted)
    monkeypatch.setattr(StreamPoller, "_wait_for_room", watched)
    writes = [f"SESSION#{i:02}" for i in range(20)]
    _, calls = run_poller(stream_table, [consumer(batch_size=1)], busy_first, writes)
    assert [sk for _, sks in calls for sk in sks] == writes
    assert len(waiting) >= 7 and max(waiting) <= 5  # 20 records in pages of at most 3


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a minute at most: the machine may be busy)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_an_idle_poller_backs_off_and_a_function_run_brings_it_back(stream_table: Any) -> None:
    """Idle (nothing read, no function run): the poller waits its idle interval between polls. A
    function starting or ending (the worker pool's ``nudge``) ends that wait at once, and while
    functions run the stream is polled at the busy rate. The idle interval here is ten minutes,
    so a pass that comes after the nudge was woken by it."""
    _, arn, streams_client, _ = stream_table
    running = 0
    poller = StreamPoller(
        streams_client, arn, [consumer()], lambda c, e: ok(c, []), poll_interval_s=0.05, idle_poll_interval_s=600
    )
    poller.quiet_after_s = 0
    poller.functions_running = lambda: running
    poller.start()
    try:
        _until(lambda: poller.state()["pollIntervalSeconds"] == 600, "the idle poller waits its idle interval")
        passes = poller.state()["readPasses"]
        poller.nudge()
        _until(lambda: poller.state()["readPasses"] > passes, "the nudge wakes the idle poller")
        running = 1
        poller.nudge()
        _until(lambda: poller.state()["pollIntervalSeconds"] == 0.05, "a running function keeps the busy rate")
        passes = poller.state()["readPasses"]
        _until(lambda: poller.state()["readPasses"] >= passes + 3, "polled at the busy rate while it runs")
        assert poller.state()["pollIntervalSeconds"] == 0.05
    finally:
        poller.stop()


def test_a_batch_failing_as_the_stack_stops_is_said_in_one_line(stream_table: Any) -> None:
    """On Ctrl-C a consumer's invocation in flight can fail because what it calls is stopping
    too (the gateway's EventBridge bus): one line says so, with no worker traceback, and the
    batch is not tried again. (The stack stops the poller before its gateway: ``Resources``.)"""
    _, arn, streams_client, _ = stream_table
    put(stream_table, "A")
    log = io.StringIO()
    called = threading.Event()
    calls: list[int] = []

    def fails_once_stopped(c: Consumer, event: dict[str, Any]) -> Any:
        calls.append(len(event["Records"]))
        called.set()
        assert poller._stop.wait(60)
        raise RuntimeError("Traceback (most recent call last):\n  ...\nEndpointConnectionError: the bus is gone")

    poller = StreamPoller(streams_client, arn, [consumer()], fails_once_stopped, log=log, poll_interval_s=0.05)
    poller.start()
    assert called.wait(60)
    poller.stop()
    for thread in poller._threads:
        thread.join()
    assert log.getvalue() == (
        "Fn: a batch of 1 stream records failed as the stack stopped"
        " (function error: EndpointConnectionError: the bus is gone)\n"
    )
    assert calls == [1]


def test_the_stack_stops_its_stream_before_what_the_consumers_call() -> None:
    """On a signal the stack stops its producers (the stream's poller, the TTL emulation) while
    the gateway still answers, then the gateway, then the rest, last started first."""
    from local_stack.gateway import Resources

    stopped: list[str] = []
    resources = Resources()

    def stop(name: str) -> Callable[[], None]:
        return lambda: stopped.append(name)

    resources.stops += [stop("dynamodb"), stop("workers")]
    resources.producers += [stop("stream"), stop("ttl")]
    resources.stop_producers()  # the signal's thread, before the gateway's shutdown
    assert stopped == ["ttl", "stream"]
    resources.close()  # after the gateway stopped serving
    assert stopped == ["ttl", "stream", "workers", "dynamodb"]


def test_a_failing_read_is_reported_once_it_lasts_and_once_per_streak() -> None:
    """A read that fails for a moment (the stack stopping on Ctrl-C: DynamoDB Local, in the same
    process group, goes first) is counted, not reported; reads failing for
    ``report_failure_after_s`` are reported once, with why, and their recovery is said."""
    log = io.StringIO()
    poller = StreamPoller(None, "arn", [], lambda c, e: ok(c, []), log=log, report_failure_after_s=2)
    poller._read_failed(100.0, "Traceback: refused")
    poller._read_failed(101.9, "Traceback: refused")
    assert log.getvalue() == ""
    poller._read_worked()  # a blip: over before it was reported
    assert log.getvalue() == ""
    poller._read_failed(200.0, "Traceback: refused")
    poller._read_failed(202.5, "Traceback: refused")
    poller._read_failed(209.0, "Traceback: refused")
    assert log.getvalue() == "stream read failing for 2 s:\nTraceback: refused\n"
    poller._read_worked()
    assert log.getvalue().endswith("stream read works again\n")
    assert poller.state()["readFailures"] == 5
