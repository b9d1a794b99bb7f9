"""``make bench``: this service against LangChain's ``DynamoDBChatMessageHistory``, on one DynamoDB.

The claim under test: a conversation costs the same per message at message 10,000 as at
message 10, and nothing is lost under concurrency. The common alternative keeps a whole
conversation in one item, so every append reads and rewrites all of it. Both run here against
the same moto DynamoDB server on 127.0.0.1 (``local_stack.dynamodb``):

1. Cost per exchange (one user message and its reply) at history lengths 10, 100, 400, 1,000
   and 10,000. Ours: ``send_message.lambda_handler`` with a payload-v2 event, the model being
   the local OpenAI-compatible server reached through the ``openai`` client. LangChain: what
   ``RunnableWithMessageHistory`` does per turn (read the history, ``add_messages``). Histories
   are seeded straight into the table (:mod:`benchmarks.seed`) and every measured exchange is
   undone afterwards, so each runs at exactly its length. Recorded: DynamoDB requests, request
   bytes, capacity as the server reports it and as DynamoDB's sizing rules compute it
   (:mod:`benchmarks.capacity`), and time. LangChain's item cap is found by bisection and its
   failure recorded at the lengths it cannot reach.
2. Concurrency: 20 appends into one conversation at once, several rounds, counting what was
   stored. Ours race as 20 processes (:mod:`benchmarks.race_child`), LangChain as 20 threads.
3. Cold start: each handler module's import time in a fresh interpreter against ``boto3``
   alone, and whether it imports ``openai``.

Writes ``benchmarks/results.md``, ``benchmarks/bytes_per_message.png`` and the raw numbers in
``benchmarks/.runs/latest.json`` (not committed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks"
LENGTHS = (10, 20, 100, 400, 1_000, 10_000)
RACE_WRITERS = 20
SERVICE = "this service"
LANGCHAIN = "LangChain DynamoDBChatMessageHistory"

for _path in (ROOT, ROOT / "functions", ROOT / "layers" / "common" / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

BENCH_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "TABLE_NAME": "chat-sessions-bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_SERVICE_NAME": "chat-sessions",
    "OPENAI_API_KEY": "local",
    "OPENAI_MODEL": "local-echo-1",
}


# ---------------------------------------------------------------------------- results
@dataclass
class Point:
    """One design at one history length."""

    design: str
    length: int
    runs: int = 0
    requests: int | None = None
    request_bytes: int | None = None
    operations: list[str] = field(default_factory=list)
    reported_capacity: float | None = None
    reported_by: list[str] = field(default_factory=list)
    est_read_units: float | None = None
    est_write_units: float | None = None
    dynamodb_ms: tuple[float, float] | None = None
    total_ms: tuple[float, float] | None = None
    model_messages: int | None = None
    operation_ms: list[tuple[str, float]] = field(default_factory=list)  # median per call, in call order
    error: str | None = None


@dataclass
class RaceRound:
    design: str
    writers: int
    succeeded: int
    stored: int
    seqs_ok: bool | None
    statuses: dict[str, int]
    note: str = ""


@dataclass
class ImportTime:
    module: str
    median_ms: float
    runs: list[float]
    imports_openai: bool


@dataclass
class Limit:
    """How long a LangChain conversation can get before its one item is full."""

    moto_turn_max: int = 0  # longest history from which a turn still succeeds on this moto server
    moto_error: str = ""  # what the turn after that raised
    dynamodb_max: int = 0  # longest history whose item fits DynamoDB's 400 KB, by its size rules
    dynamodb_max_bytes: int = 0


@dataclass
class Results:
    points: list[Point] = field(default_factory=list)
    langchain_limit: Limit = field(default_factory=Limit)
    races: list[RaceRound] = field(default_factory=list)
    imports: list[ImportTime] = field(default_factory=list)
    import_breakdown: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)  # report.machine() at the time of the run


def load_results(path: Path) -> Results:
    """The raw numbers of an earlier run (``.runs/latest.json``), to redo the report only."""
    data = json.loads(path.read_text())

    def pair(value: list[float] | None) -> tuple[float, float] | None:
        return (value[0], value[1]) if value else None

    points = [
        Point(
            **{
                **p,
                "dynamodb_ms": pair(p["dynamodb_ms"]),
                "total_ms": pair(p["total_ms"]),
                "operation_ms": [(op, ms) for op, ms in p["operation_ms"]],
            }
        )
        for p in data["points"]
    ]
    return Results(
        points=points,
        langchain_limit=Limit(**data["langchain_limit"]),
        races=[RaceRound(**r) for r in data["races"]],
        imports=[ImportTime(**i) for i in data["imports"]],
        import_breakdown=data["import_breakdown"],
        seconds=data["seconds"],
        machine=data["machine"],
    )


def median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


_STARTED = time.perf_counter()


def _log(message: str) -> None:
    print(f"[bench +{time.perf_counter() - _STARTED:.0f}s] {message}", flush=True)


# ---------------------------------------------------------------------------- the stack
class Stack:
    """One moto DynamoDB server and the local model, both on 127.0.0.1, in this process."""

    def __init__(self) -> None:
        import boto3

        from local_stack import dynamodb, model_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.update(BENCH_ENV)
        for name in ("OPENAI_API_KEY_PARAMETER", "DYNAMODB_ENDPOINT", "OPENAI_BASE_URL"):
            os.environ.pop(name, None)
        self.dynamodb_server, self.url = dynamodb.start_in_thread()
        self.model_server, self.model_url = model_server.start_in_thread()
        os.environ["DYNAMODB_ENDPOINT"] = self.url
        os.environ["OPENAI_BASE_URL"] = self.model_url
        self.low = boto3.client("dynamodb", endpoint_url=self.url)  # tables, oracle: never metered
        self.resource = boto3.resource("dynamodb", endpoint_url=self.url)
        self.seed_client = self.resource.meta.client  # seeding and checks: never metered

    def use_table(self, name: str) -> None:
        """Point the handlers at ``name`` (created from template.yaml) with fresh clients.

        Each history length gets its own table: moto copies a whole table for every item of
        every transaction (see results.md), so other lengths' items would slow this one."""
        from local_stack.template import ensure_table
        from tests.support import reset_caches

        os.environ["TABLE_NAME"] = name
        reset_caches()
        ensure_table(self.low, name)

    def close(self) -> None:
        for server in (self.dynamodb_server, self.model_server):
            server.shutdown()
            server.server_close()


def _ok(result: Any, status: int) -> dict[str, Any]:
    if result.status != status:
        raise RuntimeError(f"expected {status}, got {result.status}: {result.body}")
    body: dict[str, Any] = result.body
    return body


def _new_conversation(user: str, name: str) -> tuple[str, str]:
    from tests.support import invoke

    session = _ok(invoke("create_session", user=user, body={"name": name}), 201)["sessionId"]
    chat = _ok(invoke("create_chat", user=user, session=session, body={"name": "benchmark"}), 201)["chatId"]
    return str(session), str(chat)


# ---------------------------------------------------------------------------- our side
def measure_service(stack: Stack, length: int, runs: int) -> Point:
    from benchmarks.capacity import CapacityEstimator
    from benchmarks.meter import DynamoMeter
    from benchmarks.seed import rewind, seed_history, snapshot, text
    from chat_sessions import store
    from tests.support import invoke

    table = f"chat-sessions-bench-{length}"
    stack.use_table(table)
    user = f"bench-{length}"
    session, chat = _new_conversation(user, f"history of {length}")
    seed_history(stack.seed_client, table, user, session, chat, length, BENCH_ENV["OPENAI_MODEL"])
    saved = snapshot(stack.seed_client, table, user, session, chat)
    client = store.dynamodb_client()
    meter = DynamoMeter().attach(client)
    point = Point(SERVICE, length)
    requests: list[int] = []
    sizes: list[int] = []
    dynamo_ms: list[float] = []
    total_ms: list[float] = []
    per_call: list[list[float]] = []

    def send() -> dict[str, Any]:
        result = invoke("send_message", user=user, session=session, chat=chat, body={"content": text(length + 1)})
        body = _ok(result, 201)
        seqs = (body["userMessage"]["seq"], body["assistantMessage"]["seq"])
        if seqs != (length + 1, length + 2):
            raise RuntimeError(f"unexpected seqs {seqs} at history {length}")
        return body

    for run in range(runs + 1):  # run 0 warms connections and code paths
        meter.reset()
        started = time.perf_counter()
        send()
        elapsed = time.perf_counter() - started
        reading = meter.take()
        rewind(stack.seed_client, table, saved, [length + 1, length + 2])
        if run == 0:
            continue
        requests.append(reading.requests)
        sizes.append(reading.request_bytes)
        dynamo_ms.append(reading.dynamodb_seconds * 1000)
        total_ms.append(elapsed * 1000)
        point.operations = reading.operations
        per_call.append([c.seconds * 1000 for c in reading.calls])
    point.model_messages = len(stack.model_server.requests[-1]["messages"])

    # Capacity pass: ReturnConsumedCapacity on every request, and the documented-rules estimate.
    meter.return_capacity = True
    estimator = CapacityEstimator(stack.low).attach(client)
    send()
    reading = meter.take()
    estimate = estimator.take()
    estimator.detach()
    meter.detach()
    rewind(stack.seed_client, table, saved, [length + 1, length + 2])

    point.runs = runs
    point.requests = int(statistics.median(requests))
    if min(requests) != max(requests):
        point.error = f"request count varied between runs: {sorted(set(requests))}"
    point.request_bytes = int(statistics.median(sizes))
    point.reported_capacity = reading.reported_capacity
    point.reported_by = [c.operation for c in reading.calls if c.reported_capacity is not None]
    point.est_read_units = estimate.read_units
    point.est_write_units = estimate.write_units
    point.dynamodb_ms = median_p95(dynamo_ms)
    point.total_ms = median_p95(total_ms)
    point.operation_ms = [(op, statistics.median(run[i] for run in per_call)) for i, op in enumerate(point.operations)]
    return point


# ---------------------------------------------------------------------------- LangChain's side
def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _history_item_size(session: str, count: int) -> int:
    from boto3.dynamodb.types import TypeSerializer

    from benchmarks import langchain_side as lc
    from benchmarks.capacity import item_size

    serializer = TypeSerializer()
    item = {lc.KEY: session, "History": lc.history_dicts(count)}
    return item_size({k: serializer.serialize(v) for k, v in item.items()})


def langchain_limit(stack: Stack) -> Limit:
    """Bisect for the longest history from which LangChain's own turn still succeeds here (and
    keep the exception the next one raises), and compute where DynamoDB's 400 KB would stop it."""
    from botocore.exceptions import ClientError

    from benchmarks import langchain_side as lc

    table = stack.resource.Table(lc.TABLE)
    probe = "capacity-probe"
    history = lc.open_history(probe, stack.url)
    limit = Limit()

    def turn_succeeds(count: int) -> bool:
        try:
            lc.seed(table, probe, count)
            lc.exchange(history, count + 1)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
            limit.moto_error = _error_text(exc)
            return False
        return True

    low, high = 2, 4096
    if not turn_succeeds(low) or turn_succeeds(high):
        raise RuntimeError("the probe bounds do not bracket the item size limit")
    while high - low > 1:
        middle = (low + high) // 2
        if turn_succeeds(middle):
            low = middle
        else:
            high = middle
    turn_succeeds(high)  # leaves the exception of the first failing turn in limit.moto_error
    limit.moto_turn_max = low

    from benchmarks.capacity import ITEM_LIMIT

    low, high = 2, 4096
    while high - low > 1:
        middle = (low + high) // 2
        if _history_item_size(probe, middle) <= ITEM_LIMIT:
            low = middle
        else:
            high = middle
    limit.dynamodb_max, limit.dynamodb_max_bytes = low, _history_item_size(probe, low)
    return limit


def measure_langchain(stack: Stack, length: int, runs: int, limit: Limit) -> Point:
    from benchmarks import langchain_side as lc
    from benchmarks.capacity import CapacityEstimator
    from benchmarks.meter import DynamoMeter

    point = Point(LANGCHAIN, length)
    if length > limit.moto_turn_max:
        point.error = limit.moto_error
        return point
    table = stack.resource.Table(lc.TABLE)
    session = f"history-{length}"
    history = lc.open_history(session, stack.url)
    client = lc.client_of(history)
    meter = DynamoMeter().attach(client)
    requests: list[int] = []
    sizes: list[int] = []
    dynamo_ms: list[float] = []
    total_ms: list[float] = []
    for run in range(runs + 1):
        lc.seed(table, session, length)
        meter.reset()
        started = time.perf_counter()
        shown = lc.exchange(history, length + 1)
        elapsed = time.perf_counter() - started
        reading = meter.take()
        if shown != length or lc.stored_count(table, session) != length + 2:
            raise RuntimeError(f"LangChain exchange at {length} did not store what it should")
        if run == 0:
            continue
        requests.append(reading.requests)
        sizes.append(reading.request_bytes)
        dynamo_ms.append(reading.dynamodb_seconds * 1000)
        total_ms.append(elapsed * 1000)
        point.operations = reading.operations

    lc.seed(table, session, length)
    meter.return_capacity = True
    estimator = CapacityEstimator(stack.low).attach(client)
    lc.exchange(history, length + 1)
    reading = meter.take()
    estimate = estimator.take()
    estimator.detach()
    meter.detach()

    point.runs = runs
    point.requests = int(statistics.median(requests))
    point.request_bytes = int(statistics.median(sizes))
    point.reported_capacity = reading.reported_capacity
    point.reported_by = [c.operation for c in reading.calls if c.reported_capacity is not None]
    point.est_read_units = estimate.read_units
    point.est_write_units = estimate.write_units
    point.dynamodb_ms = median_p95(dynamo_ms)
    point.total_ms = median_p95(total_ms)
    return point


# ---------------------------------------------------------------------------- races
def _chat_messages(stack: Stack, table: str, user: str, session: str, chat: str) -> list[dict[str, Any]]:
    from chat_sessions import keys

    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
        "ExpressionAttributeValues": {
            ":pk": keys.session_partition(user, session),
            ":prefix": keys.message_prefix(chat),
        },
        "ConsistentRead": True,
    }
    while True:
        page = stack.seed_client.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def race_service(stack: Stack, round_no: int) -> RaceRound:
    """20 processes, each one send through the handler, released at once."""
    table = "chat-sessions-bench-race"
    stack.use_table(table)
    user = f"racer-{round_no}"
    session, chat = _new_conversation(user, f"race {round_no}")
    contents = [f"racer {i} of round {round_no}" for i in range(RACE_WRITERS)]
    code_path = [ROOT / "layers" / "common" / "python", ROOT / "functions", ROOT]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in code_path)}
    procs: list[tuple[subprocess.Popen[str], Any]] = []
    statuses: Counter[str] = Counter()
    with contextlib.ExitStack() as cleanup:
        for content in contents:
            err = cleanup.enter_context(tempfile.TemporaryFile(mode="w+"))
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.race_child",
                    *("--user", user, "--session", session, "--chat", chat, "--content", content),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            cleanup.callback(_stop, proc)
            procs.append((proc, err))
        for proc, err in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                err.seek(0)
                raise RuntimeError(f"racer failed to start: {line!r} {err.read()[-2000:]}")
        for proc, _ in procs:  # the starting gun: every racer is waiting on this line
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc, _ in procs:
            out, _ = proc.communicate(timeout=120)
            try:
                statuses[str(json.loads(out.strip().splitlines()[-1])["status"])] += 1
            except (ValueError, IndexError):
                statuses["crashed"] += 1
    messages = _chat_messages(stack, table, user, session, chat)
    stored_users = {m["content"] for m in messages if m["role"] == "user"}
    seqs = sorted(int(m["seq"]) for m in messages)
    return RaceRound(
        design=SERVICE,
        writers=RACE_WRITERS,
        succeeded=statuses.get("201", 0),
        stored=len(stored_users & set(contents)),
        seqs_ok=seqs == list(range(1, len(seqs) + 1)),
        statuses=dict(statuses),
        note=f"{len(messages)} messages stored (user messages and replies), seq 1..{len(seqs)}",
    )


def race_langchain(stack: Stack, round_no: int) -> RaceRound:
    """20 threads, each ``add_message`` on its own history object, released by a barrier."""
    from benchmarks import langchain_side as lc

    session = f"race-{round_no}"
    histories = [lc.open_history(session, stack.url) for _ in range(RACE_WRITERS)]
    barrier = threading.Barrier(RACE_WRITERS)
    errors: list[str] = []

    def append(index: int) -> None:
        barrier.wait()
        try:
            histories[index].add_message(lc.user_message(f"racer {index} of round {round_no}"))
        except Exception as exc:  # counted, not fatal
            errors.append(_error_text(exc))

    threads = [threading.Thread(target=append, args=(i,)) for i in range(RACE_WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stored = lc.stored_count(stack.resource.Table(lc.TABLE), session)
    return RaceRound(
        design=LANGCHAIN,
        writers=RACE_WRITERS,
        succeeded=RACE_WRITERS - len(errors),
        stored=stored,
        seqs_ok=None,
        statuses={"ok": RACE_WRITERS - len(errors), **({"error": len(errors)} if errors else {})},
        note="every add_message returned without error" if not errors else errors[0],
    )


# ---------------------------------------------------------------------------- cold start
_IMPORT_PROBE = (
    "import sys, time\n"
    "started = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - started, 'openai' in sys.modules)\n"
)


def import_times(runs: int) -> tuple[list[ImportTime], dict[str, float]]:
    """Each handler module imported in a fresh interpreter, ``runs`` times (round-robin so
    drift spreads evenly), with the code directories Lambda puts on the path."""
    from local_stack.template import routes

    modules = ["boto3", *sorted({route.module for route in routes()})]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common" / "python"), str(ROOT / "functions")]),
    }
    samples: dict[str, list[float]] = {m: [] for m in modules}
    flags: dict[str, bool] = {}
    for _ in range(runs):
        for module in modules:
            out = subprocess.run(
                [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=tempfile.gettempdir(),
            ).stdout.split()
            samples[module].append(float(out[0]) * 1000)
            flags[module] = out[1] == "True"
    found = [ImportTime(m, statistics.median(samples[m]), samples[m], flags[m]) for m in modules]

    # Where send_message's time goes: each package's cumulative time in `-X importtime`
    # (a package's first import pays for whatever of its dependencies was not loaded yet).
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import send_message"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stderr
    wanted = ("boto3", "pydantic", "aws_lambda_powertools", "openai", "send_message")
    breakdown: dict[str, float] = {}
    for line in trace.splitlines()[1:]:
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() in wanted and parts[2].strip() not in breakdown:
            breakdown[parts[2].strip()] = int(parts[1]) / 1000
    return found, breakdown


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cost benchmark (writes benchmarks/results.md).")
    parser.add_argument("--runs", type=int, default=20, help="measured exchanges per length up to 1,000")
    parser.add_argument("--long-runs", type=int, default=5, help="measured exchanges at 10,000 (moto is slow there)")
    parser.add_argument("--race-rounds", type=int, default=3)
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="*", default=list(LENGTHS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true", help="redo results.md and the plot from .runs/")
    args = parser.parse_args(argv)

    from benchmarks import report

    if args.report_only:
        results = load_results(args.out / ".runs" / "latest.json")
        report.write_markdown(results, args.out / "results.md")
        report.plot(results, args.out / "bytes_per_message.png")
        return

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    started = time.perf_counter()
    results = Results(machine=report.machine())
    stack = Stack()
    try:
        from benchmarks import langchain_side as lc

        lc.ensure_table(stack.low)
        _log("finding the longest history LangChain's single item can hold")
        results.langchain_limit = langchain_limit(stack)
        _log(f"LangChain: {results.langchain_limit}")
        for length in args.lengths:
            runs = args.runs if length <= 1_000 else args.long_runs
            results.points.append(measure_langchain(stack, length, runs, results.langchain_limit))
            _log(f"LangChain at {length}: done")
        for length in args.lengths:
            runs = args.runs if length <= 1_000 else args.long_runs
            results.points.append(measure_service(stack, length, runs))
            _log(f"service at {length}: done")
        for round_no in range(args.race_rounds):
            results.races.append(race_service(stack, round_no))
            results.races.append(race_langchain(stack, round_no))
            _log(f"race round {round_no}: done")
    finally:
        stack.close()
    _log("import times")
    results.imports, results.import_breakdown = import_times(args.import_runs)
    results.seconds = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / ".runs"
    raw.mkdir(exist_ok=True)
    (raw / "latest.json").write_text(json.dumps(asdict(results), indent=2))
    report.write_markdown(results, args.out / "results.md")
    report.plot(results, args.out / "bytes_per_message.png")
    _log(f"wrote {args.out / 'results.md'} and {args.out / 'bytes_per_message.png'} in {results.seconds:.0f} s")


if __name__ == "__main__":
    main()
