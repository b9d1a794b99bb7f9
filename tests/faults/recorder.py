"""Every answer the fault tier got, and what the contract allows it to be.

Under faults the contract allows exactly three failures besides a scenario's own 4xx:
``409 conflict`` (contention that outlasted the service's retries), ``429 rate_limited`` and
``503 unavailable``, the last two with ``Retry-After``. Anything else (a ``500`` above all, or a
collision reported as a limit or a state) is a problem, recorded with the faults the injector
made while that request ran, so a failure report says what DynamoDB did to it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from local_stack.token import make_token

TRANSIENT = {(409, "conflict"), (429, "rate_limited"), (503, "unavailable")}
NEEDS_RETRY_AFTER = {429, 503}
ATTEMPTS = 12  # a client's patience with transient answers, per logical operation


@dataclass
class Call:
    test: str
    method: str
    route: str  # the route template, e.g. POST /sessions/{sessionId}/chats
    path: str
    status: int
    code: str | None
    body: str
    retry_after: str | None
    started: float
    ended: float
    request_body: Any = None
    earlier: tuple[str, ...] = ()  # the answers to the earlier tries of the same operation
    op_started: float = 0.0  # when its first try began


@dataclass
class Problem:
    call: Call
    why: str
    faults: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        earlier = f" after {', '.join(self.call.earlier)}" if self.call.earlier else " at the first try"
        return (
            f"{self.call.status} {self.call.route} ({self.why}){earlier}; "
            f"faults during its tries: {describe_faults(self.faults)}; body: {self.call.body[:300]}"
        )


def describe_faults(events: list[dict[str, Any]]) -> str:
    """``lost_write on PutItem [USER#u#IDEMPOTENCY|send_message#...]``, repeats counted."""
    kinds = Counter(
        f"{e['kind']} on {e['operation']}" + (f" [{', '.join(k[:70] for k in e['keys'])}]" if e.get("keys") else "")
        for e in events
    )
    return "; ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.items()) or "none"


class Recorder:
    """Thread-safe log of calls, problems and invariant checks for the whole tier."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.problems: list[Problem] = []
        self.checks: Counter[str] = Counter()
        self.gave_up: list[Call | None] = []  # last answers of operations still transient after every try

    def add(self, call: Call, problem: str | None) -> None:
        with self.lock:
            self.calls.append(call)
            if problem is not None:
                self.problems.append(Problem(call, problem))

    def checked(self, name: str, count: int = 1) -> None:
        with self.lock:
            self.checks[name] += count

    def problems_of(self, test: str) -> list[Problem]:
        with self.lock:
            return [p for p in self.problems if p.call.test == test]

    def calls_of(self, test: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.test == test]


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return str(code) if code is not None else None
    return None


class Api:
    """One user's HTTP client for the stack, recording every answer in the recorder."""

    def __init__(
        self,
        url: str,
        user: str,
        test: str,
        recorder: Recorder,
        events: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self.user = user
        self.stack_events = events  # the injector's fault events, to explain a failure
        self.test = test
        self.recorder = recorder
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {make_token(user)}"}, timeout=60)
        self.op_started = 0.0  # when the last until_done began (the window its faults fell in)
        self.last_call: Call | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        route: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        allowed: frozenset[str] = frozenset(),
        earlier: tuple[str, ...] = (),
    ) -> httpx.Response:
        """One request; the answer is recorded and judged: a 2xx, a transient answer the
        contract allows (with ``Retry-After`` where it needs one), or a code in ``allowed``."""
        headers = {"Idempotency-Key": key} if key else {}
        started = time.time()
        response = self.http.request(method, path, json=body, headers=headers)
        ended = time.time()
        code = _code(response)
        problem: str | None = None
        if response.status_code >= 500 and response.status_code != 503:
            problem = "a 5xx other than 503 unavailable"
        elif response.status_code >= 400:
            if (response.status_code, code) in TRANSIENT:
                if response.status_code in NEEDS_RETRY_AFTER and not response.headers.get("Retry-After"):
                    problem = "no Retry-After"
            elif code not in allowed:
                problem = f"{code} is not allowed here"
        call = Call(
            self.test,
            method,
            f"{method} {route}",
            path,
            response.status_code,
            code,
            response.text,
            response.headers.get("Retry-After"),
            started,
            ended,
            body,
            earlier,
            self.op_started if earlier else started,
        )
        self.recorder.add(call, problem)
        self.last_call = call
        return response

    def until_done(
        self,
        method: str,
        route: str,
        path: str,
        body: Any = None,
        allowed: frozenset[str] = frozenset(),
        idempotent: bool = True,
        attempts: int = ATTEMPTS,
        key: str | None = None,
    ) -> httpx.Response:
        """A client that retries: transient answers (and, so that one run finds every problem,
        5xx) are retried with the same ``Idempotency-Key`` (POSTs), up to ``attempts`` times, with
        a short growing pause between tries (a client's backoff, not a wait for anything)."""
        if key is None and method == "POST" and idempotent:
            key = f"{self.test[:40]}-{uuid.uuid4().hex}"
        self.op_started = time.time()
        response = self.call(method, route, path, body, key, allowed)
        earlier: tuple[str, ...] = ()
        for attempt in range(1, attempts):
            transient = (response.status_code, _code(response)) in TRANSIENT or response.status_code >= 500
            if not transient:
                break
            earlier = (*earlier, f"{response.status_code} {_code(response)}")
            time.sleep(min(0.02 * attempt, 0.2))
            response = self.call(method, route, path, body, key, allowed, earlier)
        if (response.status_code, _code(response)) in TRANSIENT or response.status_code >= 500:
            with self.recorder.lock:
                self.recorder.gave_up.append(self.last_call)
        return response


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i in 0..n-1 on n threads released together by a barrier."""
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))
