"""``make bench-local``: the local stack (``python -m local_stack``, what ``make run`` starts) under load.

The question: can ``make run`` be a development backend that a load test does not knock over?
200 sends (``POST /sessions/{id}/messages``) from 10 users, each on 4 threads sending into the
user's one active chat (so a user's sends race for the next ``seq``), 40 requests in flight at
most, against the stack with its local model on 127.0.0.1, after ``--stored`` messages were put
in the table. Measured: sends per second, latency p50/p95/p99 as the client sees it, answers by
status, and the stack's memory (every process of its process group: the gateway, the worker
processes, the fork server, DynamoDB Local's JVM) sampled every 100 ms, as PSS (each shared page
counted once, split between the processes that share it) and as the plain sum of RSS (shared
pages counted once per process, so an overstatement). Afterwards every chat is read back through
the API: exactly 200 user messages and 200 replies must have been stored, ``seq`` without a gap.

Stored messages are written straight into the table (:mod:`benchmarks.seed`), into the same 10
chats the load sends to (so each conversation is long too, not only the table), before the stack
sees any request. Before the timed sends, a warm-up of 40 concurrent sends (other sessions of the
same users; not counted) starts the workers, as the first minutes of a development session do,
and the table's stream consumers are let finish with the seeded and warm-up records (see
:func:`drain`). CPU time is read per process of the stack, the workers' by the function they
serve (a worker names itself after its function), with the machine's load average, since other
work on a shared machine slows every figure here but the CPU times.

Writes its own section of ``benchmarks/results.md`` (between ``<!-- local-load -->`` markers),
leaving the cost benchmark's sections as they are; raw numbers in ``benchmarks/.runs/local-load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results.md"
RAW = ROOT / "benchmarks" / ".runs" / "local-load.json"
USERS = 10
THREADS = 4
SENDS = 200
STORED = (1_000, 10_000)
BEGIN = "<!-- local-load:begin -->"
END = "<!-- local-load:end -->"

for _path in (ROOT, ROOT / "functions", ROOT / "layers" / "common" / "python"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    process: subprocess.Popen[str]
    url: str
    dynamodb: str
    backend: str
    lines: list[str]


@contextmanager
def running_stack(backend: str, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    """``python -m local_stack`` on a free port in its own process group, as ``make run`` runs it."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PORT": "0",
        "LOCAL_DYNAMODB": backend,
        "MAX_ACTIVE_SESSIONS": "10",
        **(extra or {}),
    }
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DYNAMODB_ENDPOINT", "DYNAMODB_FAULTS", "LOCAL_DATA_DIR"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("ready "):
                break
        else:
            raise RuntimeError("the stack exited before it was ready:\n" + "\n".join(lines))
        threading.Thread(target=lambda out=process.stdout: [None for _ in out], daemon=True).start()
        table_line = next(line for line in lines if line.startswith("table "))
        yield Stack(process, lines[-1].split()[1], table_line.rsplit(" at ", 1)[1], backend, lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_seconds(stack: Stack) -> float:
    """SIGTERM to the stack (as ``make run``'s terminal would); seconds until its whole group is gone."""
    started = time.monotonic()
    stack.process.send_signal(signal.SIGTERM)
    stack.process.wait(timeout=60)
    while group_pids(stack.process.pid) and time.monotonic() - started < 60:
        time.sleep(0.02)
    return time.monotonic() - started


# --- memory -------------------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def part_of(pid: int) -> str:
    """Which part of the stack a process is: dynamodb, gateway, workers (the fork server), or
    ``workers: <function>`` (a worker names itself after its function, cut to 15 characters)."""
    command = Path(f"/proc/{pid}/cmdline").read_text()
    if "java" in command or "local_stack.dynamodb" in command:
        return "dynamodb"
    if "forkserver" not in command and "resource_tracker" not in command:
        return "gateway"
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    return "workers" if comm.startswith("python") else f"workers: {comm}"


def cpu_seconds(pgid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by each live process of the group, by part."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            kind = part_of(pid)
        except OSError:
            continue
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def memory_by_part(pgid: int) -> dict[str, float]:
    """PSS in MB by part of the stack (workers of one function summed)."""
    found: dict[str, float] = {}
    for pid in group_pids(pgid):
        try:
            kind = part_of(pid)
            pss = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                if line.startswith("Pss:")
            )
        except (OSError, StopIteration):
            continue
        found[kind] = found.get(kind, 0.0) + pss / 1024
    return found


def memory_kb(pgid: int) -> tuple[int, int]:
    """(PSS, RSS) of the process group, in kB."""
    pss = rss = 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


class MemorySampler:
    def __init__(self, pgid: int, every: float = 0.1) -> None:
        self.pgid, self.every = pgid, every
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(memory_kb(self.pgid))
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(memory_kb(self.pgid))

    def peak_mb(self) -> tuple[float, float]:
        return max(s[0] for s in self.samples) / 1024, max(s[1] for s in self.samples) / 1024


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Conversation:
    user: str
    session: str
    chat: str
    token: str


def _client(url: str, token: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def new_conversation(url: str, user: str, name: str) -> Conversation:
    from local_stack.token import make_token

    token = make_token(user, 24 * 3600)
    with _client(url, token) as http:
        session = http.post("/sessions", json={"name": name})
        session.raise_for_status()
        sid = session.json()["sessionId"]
        chat = http.post(f"/sessions/{sid}/chats", json={"name": name})
        chat.raise_for_status()
        return Conversation(user, sid, chat.json()["chatId"], token)


def seed(stack: Stack, conversations: list[Conversation], stored: int) -> float:
    """Put ``stored`` messages in the table, shared out over the conversations; returns seconds."""
    import boto3

    from benchmarks.seed import seed_history

    started = time.monotonic()
    client = boto3.resource(
        "dynamodb",
        endpoint_url=stack.dynamodb,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    ).meta.client
    table = os.environ.get("TABLE_NAME") or "chat-sessions-local"
    each = stored // len(conversations)
    each -= each % 2  # user message and reply pairs
    for conversation in conversations:
        seed_history(client, table, conversation.user, conversation.session, conversation.chat, each, "local-echo-1")
    return time.monotonic() - started


def drain(url: str) -> float:
    """Wait until the table's stream consumers (``GET /local/stream?drained``) have handled every
    change made so far; returns seconds. The seeded messages are stream records too (a push and a
    domain event each): left in the stream, their consumers would run during the timed sends and
    bill their CPU to the sends, more so the more messages were seeded."""
    import httpx

    started = time.monotonic()
    while True:
        answer = httpx.get(f"{url}/local/stream", params={"drained": "", "timeout": "600"}, timeout=660)
        if answer.status_code == 200:
            return time.monotonic() - started
        if answer.status_code != 503:
            answer.raise_for_status()


def send_all(
    url: str, conversations: list[Conversation], sends: int, threads: int
) -> tuple[list[float], Counter[str], float]:
    """``sends`` sends shared out over ``threads`` threads per conversation; latencies in ms."""
    per_thread = sends // (len(conversations) * threads)
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(conversations) * threads)

    def worker(conversation: Conversation) -> None:
        with _client(url, conversation.token) as http:
            barrier.wait()
            for i in range(per_thread):
                started = time.perf_counter()
                try:
                    response = http.post(f"/sessions/{conversation.session}/messages", json={"content": f"load {i}"})
                    outcome = str(response.status_code)
                    if response.status_code != 201:
                        outcome += " " + response.json().get("error", {}).get("code", "?")
                except Exception as exc:
                    outcome = type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    outcomes[outcome] += 1

    jobs = [c for c in conversations for _ in range(threads)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(worker, jobs))
    return latencies, outcomes, time.monotonic() - started


def count_new(url: str, conversation: Conversation, after_seq: int) -> tuple[int, int, list[int]]:
    """User messages and replies stored after ``after_seq``, and their seqs (newest first)."""
    users = replies = 0
    seqs: list[int] = []
    cursor = None
    with _client(url, conversation.token) as http:
        while True:
            params: dict[str, Any] = {"limit": 100, "order": "desc", **({"cursor": cursor} if cursor else {})}
            page = http.get(f"/sessions/{conversation.session}/chats/{conversation.chat}/messages", params=params)
            page.raise_for_status()
            body = page.json()
            for message in body["items"]:
                if message["seq"] <= after_seq:
                    return users, replies, seqs
                seqs.append(message["seq"])
                users += message["role"] == "user"
                replies += message["role"] == "assistant" and message["status"] == "complete"
            cursor = body["nextCursor"]
            if cursor is None:
                return users, replies, seqs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Result:
    backend: str
    stored: int
    sends: int
    seconds: float
    sends_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    outcomes: dict[str, int]
    user_messages: int
    replies: int
    seqs_gap_free: bool
    memory_before_mb: float
    peak_pss_mb: float
    peak_rss_mb: float
    memory_after_mb: float
    warmup_p50_ms: float
    warmup_max_ms: float
    seed_s: float
    stop_s: float
    drain_s: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average before / after the sends
    dynamodb: str = ""
    cpu_ms_per_send: dict[str, float] = field(default_factory=dict)
    memory_after_by_part: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def measure(backend: str, stored: int, sends: int = SENDS, users: int = USERS, threads: int = THREADS) -> Result:
    with running_stack(backend) as stack:
        names = [f"load-{i}-{os.urandom(3).hex()}" for i in range(users)]
        conversations = [new_conversation(stack.url, name, "load") for name in names]
        seed_s = seed(stack, conversations, stored)
        seeded = (stored // users) - (stored // users) % 2
        drain_s = drain(stack.url)
        warm = [new_conversation(stack.url, name, "warm-up") for name in names]
        warm_latencies, warm_outcomes, _ = send_all(stack.url, warm, users * threads, threads)
        drain_s += drain(stack.url)
        before = memory_kb(stack.process.pid)[0] / 1024
        cpu_before = cpu_seconds(stack.process.pid)
        load_before = os.getloadavg()[0]
        with MemorySampler(stack.process.pid) as sampler:
            latencies, outcomes, seconds = send_all(stack.url, conversations, sends, threads)
        cpu_after = cpu_seconds(stack.process.pid)
        load_average = (load_before, os.getloadavg()[0])
        cpu_ms = {k: (v - cpu_before.get(k, 0.0)) * 1000 / len(latencies) for k, v in cpu_after.items()}
        after = memory_kb(stack.process.pid)[0] / 1024
        after_by_part = memory_by_part(stack.process.pid)
        users_stored = replies_stored = 0
        gap_free = True
        for conversation in conversations:
            u, r, seqs = count_new(stack.url, conversation, seeded)
            users_stored += u
            replies_stored += r
            gap_free &= sorted(seqs) == list(range(seeded + 1, seeded + 1 + len(seqs)))
        peak_pss, peak_rss = sampler.peak_mb()
        stop_s = stop_seconds(stack)
        notes = [f"warm-up answers: {dict(warm_outcomes)}"] if set(warm_outcomes) != {"201"} else []
        return Result(
            backend=backend,
            stored=stored,
            sends=len(latencies),
            seconds=seconds,
            sends_per_s=len(latencies) / seconds,
            p50_ms=statistics.median(latencies),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            max_ms=max(latencies),
            outcomes=dict(outcomes),
            user_messages=users_stored,
            replies=replies_stored,
            seqs_gap_free=gap_free,
            memory_before_mb=before,
            peak_pss_mb=peak_pss,
            peak_rss_mb=peak_rss,
            memory_after_mb=after,
            warmup_p50_ms=statistics.median(warm_latencies),
            warmup_max_ms=max(warm_latencies),
            seed_s=seed_s,
            stop_s=stop_s,
            drain_s=drain_s,
            load_average=load_average,
            cpu_ms_per_send=cpu_ms,
            memory_after_by_part=after_by_part,
            dynamodb=next((line for line in stack.lines if line.startswith("table ")), ""),
            notes=notes,
        )


# --- one request against each engine, by table size -----------------------------------------------


@dataclass
class EnginePoint:
    engine: str
    items: int
    transact_ms: float
    query_ms: float
    memory_mb: float


@contextmanager
def _engine(engine: str) -> Iterator[tuple[str, int]]:
    """The engine as a process of its own (URL, pid), so its memory can be read alone."""
    if engine == "moto":
        process = subprocess.Popen(
            [sys.executable, "-m", "local_stack.dynamodb", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[1]
            yield url, process.pid
        finally:
            process.terminate()
            process.wait()
    else:
        from local_stack import dynamodb_local

        instance = dynamodb_local.start()
        try:
            yield instance.url, instance.process.pid
        finally:
            instance.stop()


def engine_points(engine: str, sizes: list[int], runs: int = 20) -> list[EnginePoint]:
    """Median time of one conditional two-item ``TransactWriteItems`` (a send's shape) and of one
    ``Query`` of 20 items, after the table was filled to each size; and the engine's RSS."""
    import boto3

    from local_stack.template import ensure_table

    points = []
    with _engine(engine) as (url, pid):
        client = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        ensure_table(client, "engine")
        filled = 0
        body = "x" * 400
        for size in sizes:
            for start in range(filled, size, 25):
                requests: list[Any] = [
                    {"PutRequest": {"Item": {"PK": {"S": f"P#{i % 10}"}, "SK": {"S": f"M#{i:08d}"}, "c": {"S": body}}}}
                    for i in range(start, min(size, start + 25))
                ]
                client.batch_write_item(RequestItems={"engine": requests})
            filled = size
            transact: list[float] = []
            query: list[float] = []
            warmup = 100 if size == sizes[0] else 1  # the JVM compiles its hot paths first
            for run in range(-warmup, runs):
                key = f"T#{size}#{run}"
                started = time.perf_counter()
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": "engine",
                                "Item": {"PK": {"S": "P#0"}, "SK": {"S": key}, "c": {"S": body}},
                                "ConditionExpression": "attribute_not_exists(PK)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": "engine",
                                "Key": {"PK": {"S": "P#1"}, "SK": {"S": "HEAD"}},
                                "UpdateExpression": "ADD n :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}},
                            }
                        },
                    ]
                )
                middle = time.perf_counter()
                client.query(
                    TableName="engine",
                    KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues={":pk": {"S": "P#2"}},
                    Limit=20,
                    ScanIndexForward=False,
                )
                done = time.perf_counter()
                if run >= 0:
                    transact.append((middle - started) * 1000)
                    query.append((done - middle) * 1000)
            rss = int(
                next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS")).split()[
                    1
                ]
            )
            points.append(EnginePoint(engine, size, statistics.median(transact), statistics.median(query), rss / 1024))
            print(asdict(points[-1]), file=sys.stderr, flush=True)
    return points


# --- results.md ----------------------------------------------------------------------------------


def replace_section(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section`` (appended if absent)."""
    block = f"{BEGIN}\n{section.strip()}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1].lstrip("\n")
    return text.rstrip("\n") + "\n\n" + block


def keep_section(path: Path, text: str) -> str:
    """For writers of the whole file (``benchmarks.report``): ``text`` with this benchmark's section
    from the file as it is now, so that regenerating one benchmark does not drop the other's."""
    try:
        old = path.read_text()
    except OSError:
        return text
    if BEGIN not in old or END not in old:
        return text
    section = old.split(BEGIN, 1)[1].split(END, 1)[0]
    return replace_section(text, section)


def _status(result: Result) -> str:
    return ", ".join(f"`{k}` {v}" for k, v in sorted(result.outcomes.items()))


def markdown(results: list[Result], engines: list[EnginePoint], started: str, total_s: float) -> str:
    import importlib.metadata as md

    cpu = "unknown CPU"
    with suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    packages = ", ".join(f"{name} {md.version(name)}" for name in ("h11", "boto3", "moto", "openai"))
    lines = [
        "## The local stack under load (`make bench-local`)",
        "",
        "Generated by `make bench-local` (`python -m benchmarks.local_load`); do not edit by hand.",
        "",
        f"- Date: {started}; the whole run took {total_s:.0f} s.",
        f"- Machine: {cpu}, {os.cpu_count()} cores; CPython {platform.python_version()}; "
        f"{java[0] if java else 'no Java'}; {packages}.",
        f"- Load: {SENDS} sends (`POST /sessions/{{id}}/messages`, 400-character answers from the local model) from "
        f"{USERS} users x {THREADS} threads (40 in flight at most, each user's 4 threads racing in one chat), "
        "against `python -m local_stack` on 127.0.0.1, after the stored messages were written into those same "
        "chats. A warm-up of 40 sends (other sessions, not counted) ran first, and the table's stream consumers "
        "(pushes, domain events) were let finish with the seeded and warm-up records before the timed sends.",
        "- CPU: user + system time of each process of the stack over the timed sends, divided by the sends; "
        "the load generator's own CPU is not in it. Wall-clock figures depend on the machine's load average "
        "(given for each run), the CPU times much less.",
        "- Memory: the stack's whole process group (gateway, workers, fork server, DynamoDB), sampled every 100 ms. "
        "PSS counts each shared page once; the RSS sum counts pages the workers share with the fork server once "
        "per worker, so it overstates.",
        "",
        "| DynamoDB | stored messages | sends/s | p50 ms | p95 ms | p99 ms | max ms | answers | stored after "
        "(user / replies, seq gap-free) | memory PSS before / peak / after MB | peak RSS sum MB | stop after "
        "SIGTERM s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.stored:,} | {r.sends_per_s:.1f} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.p99_ms:.0f} "
            f"| {r.max_ms:.0f} | {_status(r)} | {r.user_messages} / {r.replies}, {'yes' if r.seqs_gap_free else 'NO'} "
            f"| {r.memory_before_mb:.0f} / {r.peak_pss_mb:.0f} / {r.memory_after_mb:.0f} | {r.peak_rss_mb:.0f} "
            f"| {r.stop_s:.1f} |"
        )
    lines.append("")
    for r in results:
        parts = {k: v for k, v in r.cpu_ms_per_send.items() if not k.startswith("workers")}
        functions = {k.split(": ", 1)[1]: v for k, v in r.cpu_ms_per_send.items() if k.startswith("workers: ")}
        parts["workers"] = sum(v for k, v in r.cpu_ms_per_send.items() if k.startswith("workers"))
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(parts.items()))
        by_function = ", ".join(f"{k} {v:.0f}" for k, v in sorted(functions.items(), key=lambda kv: -kv[1]) if v >= 0.5)
        lines.append(
            f"- CPU per send ({r.backend}, {r.stored:,} stored), ms by part of the stack: {cpu} "
            f"(in {sum(parts.values()):.0f}; the workers' by function, names cut to 15 characters: {by_function})."
        )
        if r.memory_after_by_part:
            memory = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.memory_after_by_part.items(), key=lambda kv: -kv[1]))
            lines.append(
                f"- Memory after the sends ({r.backend}, {r.stored:,} stored), PSS MB by part of the stack: {memory}."
            )
    for r in results:
        lines.append(
            f"- {r.backend}, {r.stored:,} stored: load average {r.load_average[0]:.1f} before the sends, "
            f"{r.load_average[1]:.1f} after; warm-up (cold workers) p50 {r.warmup_p50_ms:.0f} ms, "
            f"max {r.warmup_max_ms:.0f} ms; seeding took {r.seed_s:.1f} s, and the stream consumers "
            f"{r.drain_s:.1f} s more with the seeded and warm-up records; {r.dynamodb}."
            + ("".join(f" {note}." for note in r.notes))
        )
    if engines:
        lines += [
            "",
            "One request against each engine alone, by the number of items in the table (median ms; a conditional "
            "two-item `TransactWriteItems`, the shape of a send's writes, and a `Query` of 20 items; the engine in a "
            "process of its own, its RSS after the requests):",
            "",
            "| engine | items in the table | TransactWriteItems ms | Query ms | engine RSS MB |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {e.engine} | {e.items:,} | {e.transact_ms:.1f} | {e.query_ms:.1f} | {e.memory_mb:.0f} |"
            for e in engines
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The local stack under load (writes a section of results.md).")
    parser.add_argument("--stored", type=int, nargs="*", default=list(STORED))
    parser.add_argument(
        "--moto-stored",
        type=int,
        nargs="*",
        default=[1_000],
        help="also load the stack on moto (LOCAL_DYNAMODB=moto) at these sizes; at 10,000 it takes an hour",
    )
    parser.add_argument("--sends", type=int, default=SENDS)
    parser.add_argument("--no-engines", action="store_true", help="skip the one-request measurements")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave results.md alone")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the stacks
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    results = []
    for backend, sizes in (("dynamodb-local", args.stored), ("moto", args.moto_stored)):
        for stored in sizes:
            print(f"{backend}, {stored:,} stored ...", file=sys.stderr, flush=True)
            result = measure(backend, stored, args.sends)
            print(json.dumps(asdict(result)), file=sys.stderr, flush=True)
            results.append(result)
    engines: list[EnginePoint] = []
    if not args.no_engines:
        engines += engine_points("dynamodb-local", [0, 1_000, 10_000, 30_000], runs=100)
        engines += engine_points("moto", [0, 1_000, 4_000, 10_000], runs=3)
    section = markdown(results, engines, started, time.monotonic() - t0)
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(
        json.dumps({"load": [asdict(r) for r in results], "engines": [asdict(e) for e in engines]}, indent=2)
    )
    if args.no_write:
        print(section)
        return
    text = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(replace_section(text, section))
    print(f"wrote the local-load section of {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
