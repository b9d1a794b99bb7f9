"""Lambda-like execution for the local stack: each function has its own worker processes, each of
which serves one invocation at a time, as a Lambda execution environment does.

Why processes and not threads: Powertools' resolver keeps the current event in a class
attribute (``BaseRouter.current_event``), which is safe in Lambda (one request per container)
but not across threads of one process. Worker processes keep that guarantee while concurrent
requests still race against DynamoDB the way concurrent Lambda invocations do.

What it keeps from Lambda, and why each matters locally:

- **Per-function concurrency** (``LOCAL_CONCURRENCY`` workers per function, default 3): a function
  whose invocations are slow (a model call) fills its own workers, never another function's, so
  a slow model cannot keep ``GET /sessions`` waiting.
- **Waiting for a worker is not running**: a request that finds its function's workers busy
  waits for one (at most ``LOCAL_QUEUE_SECONDS``, then ``WorkerBusy``, which the gateway answers
  ``429``), and the function's timeout starts only when its handler does. Starting a worker (the
  cold start: importing the handler module) has its own limit, as Lambda's init phase has.
- **A timed-out invocation is stopped**: the worker process is killed (``SIGKILL``) before the
  gateway answers, so an invocation answered "timed out" cannot commit anything afterwards; the
  next request gets a fresh worker.
- **Idle workers are retired** after ``LOCAL_WORKER_IDLE_SECONDS`` (default 300), so memory
  follows the load, and there are at most ``LOCAL_MAX_WORKERS`` (default 12) in all: past it, a
  new worker replaces the longest-idle worker of another function, or waits for one to become
  idle. With 3 per function, 4 functions can be saturated at once (the 3 that call the model
  among them) and the others still get workers.

Workers are forked from a ``multiprocessing`` fork server that has already imported the heavy
libraries every handler needs (boto3, pydantic, Powertools, openai): a cold start costs tens of
milliseconds instead of a second, and the workers share those pages, which keeps the stack's
memory small. Each worker receives the gateway's environment when it starts (the fork server
may have been started earlier, by another pool) and imports its handler module itself.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

DEFAULT_CONCURRENCY = 3
DEFAULT_MAX_WORKERS = 12
DEFAULT_QUEUE_SECONDS = 30.0
DEFAULT_IDLE_SECONDS = 300.0
INIT_TIMEOUT_S = 30.0  # the cold start (import of the handler module); Lambda allows 10 s
STOP_GRACE_S = 1.0  # what running invocations get when the stack stops

# Imported once by the fork server, shared by every worker forked from it (see the module).
PRELOAD = ["local_stack._preload"]


def _env_float(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else default
    if not value >= minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}, not {raw}")
    return value


def scale() -> float:
    """``LOCAL_TIMEOUT_SCALE`` (default 1; for tests): the gateway waits this many times a
    function's timeout (and the cold-start limit) before it stops the invocation as timed out. The
    tests' stacks run on busy machines and scale it, so that a timeout there means code that hangs,
    not a slow machine. The handler's context still counts down from its template timeout."""
    return _env_float("LOCAL_TIMEOUT_SCALE", 1.0, 1.0)


class WorkerBusy(Exception):
    """Every worker of the function stayed busy for the whole queueing limit."""


class InvocationTimeout(TimeoutError):
    """The invocation outlived its function's timeout and was stopped (its worker was killed)."""


class FunctionError(Exception):
    """The handler raised, or its worker died; the message carries the worker's traceback."""


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools use."""

    function_name: str
    aws_request_id: str
    deadline: float
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{os.getpid()}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


# --- inside a worker process ------------------------------------------------------------------


def _exit_with_parent(parent: int) -> None:
    """A worker outlives nothing: when the fork server goes (the gateway died, even by SIGKILL),
    the worker is re-parented and ends."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _worker_main(
    conn: Connection, paths: list[str], env: dict[str, str], module: str, handler: str, function_name: str
) -> None:
    """A worker's life: import the handler (the cold start), say so, then serve invocations one
    at a time until the gateway closes the pipe."""
    # Ctrl-C reaches the whole process group; the gateway stops its workers itself, so a worker
    # ignores SIGINT instead of printing a KeyboardInterrupt traceback mid-invocation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Powertools warns on every invocation that publishes no metrics (metrics are off locally).
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    with contextlib.suppress(OSError):  # ps and tests see which function a worker serves (15 characters)
        Path("/proc/self/comm").write_text(function_name[:15])
    os.environ.clear()
    os.environ.update(env)
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        function = getattr(importlib.import_module(module), handler)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            timeout_s, event, memory_mb = conn.recv()
        except (EOFError, OSError):
            return
        context = LambdaContext(
            function_name=function_name,
            aws_request_id=str(uuid.uuid4()),
            deadline=time.time() + timeout_s,
            memory_limit_in_mb=memory_mb,
        )
        try:
            reply: tuple[str, Any] = ("ok", function(event, context))
        except Exception:
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


# --- in the gateway ---------------------------------------------------------------------------


_context_lock = threading.Lock()
_context: Any = None


def _mp_context() -> Any:
    """The fork-server context (preloading ``PRELOAD``), shared by every pool of this process."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
        return _context


class _Worker:
    """One worker process bound to one function, and the pipe to it."""

    def __init__(self, paths: list[str], module: str, handler: str, function_name: str, init_timeout: float) -> None:
        from local_stack.template import environment_for  # the function's template Environment under ours

        context = _mp_context()
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, paths, environment_for(function_name), module, handler, function_name),
            name=f"worker-{function_name}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.idle_since = time.monotonic()
        try:
            kind, detail = self._reply(init_timeout)
        except InvocationTimeout:
            self.kill()
            raise InvocationTimeout(f"{function_name} did not start within {init_timeout:g} s") from None
        except BaseException:
            self.kill()
            raise
        if kind != "ready":
            self.kill()
            raise FunctionError(f"{function_name} failed to start:\n{detail}")

    def _reply(self, timeout: float) -> tuple[str, Any]:
        try:
            ready = self.conn.poll(timeout)
            kind, detail = self.conn.recv() if ready else ("timeout", None)
        except (EOFError, OSError) as exc:
            raise FunctionError(f"the worker process ended (exit code {self.process.exitcode})") from exc
        if kind == "timeout":
            raise InvocationTimeout
        return str(kind), detail

    def invoke(self, timeout_s: float, wait_s: float, event: dict[str, Any], memory_mb: int) -> Any:
        self.conn.send((timeout_s, event, memory_mb))
        kind, detail = self._reply(wait_s)
        if kind == "error":
            raise FunctionError(str(detail))
        return detail

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        """SIGKILL and reap: nothing the worker was doing goes on after this returns."""
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()

    def close(self) -> None:
        """Retire an idle worker: closing the pipe ends its loop; SIGTERM in case it does not."""
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.process.terminate()
            self.process.join(2)
            if self.process.is_alive():
                self.kill()


@dataclass
class _Function:
    """The workers of one function: idle ones, and how many exist (idle or busy)."""

    limit: int
    idle: list[_Worker] = field(default_factory=list)
    busy: set[_Worker] = field(default_factory=set)
    starting: int = 0
    waiting: deque[object] = field(default_factory=deque)  # requests queued for a worker, first come first served

    @property
    def count(self) -> int:
        return len(self.idle) + len(self.busy) + self.starting


class WorkerPool:
    """Worker processes per function, at most ``concurrency`` each."""

    def __init__(
        self,
        import_paths: list[str],
        concurrency: int | None = None,
        queue_seconds: float | None = None,
        idle_seconds: float | None = None,
        timeout_scale: float | None = None,
        max_workers: int | None = None,
    ) -> None:
        self._paths = list(import_paths)
        self._limit = concurrency or int(os.environ.get("LOCAL_CONCURRENCY", "").strip() or DEFAULT_CONCURRENCY)
        if self._limit < 1:
            raise ValueError(f"LOCAL_CONCURRENCY must be at least 1, not {self._limit}")
        self._scale = scale() if timeout_scale is None else timeout_scale
        self._queue_s = (
            queue_seconds
            if queue_seconds is not None
            else _env_float("LOCAL_QUEUE_SECONDS", DEFAULT_QUEUE_SECONDS, 0.0) * self._scale
        )
        self._idle_s = (
            idle_seconds
            if idle_seconds is not None
            else _env_float("LOCAL_WORKER_IDLE_SECONDS", DEFAULT_IDLE_SECONDS, 1.0)
        )
        self._max_workers = max(
            self._limit,
            max_workers or int(os.environ.get("LOCAL_MAX_WORKERS", "").strip() or DEFAULT_MAX_WORKERS),
        )
        self._functions: dict[str, _Function] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._running = 0  # invocations under way, queued ones included
        self._listeners: list[Callable[[], None]] = []
        self._reaper = threading.Thread(target=self._reap, name="worker-reaper", daemon=True)
        self._reaper.start()

    def warm(self) -> None:
        """Start the fork server now (importing ``PRELOAD`` takes a second or two), not on the
        first request."""
        from multiprocessing import forkserver

        _mp_context()
        forkserver.ensure_running()

    def on_activity(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (quick, never raising) as each invocation starts and as it ends: the
        table's stream poller (``local_stack.streams``) polls at its busy rate while functions
        run, since what they write is on the stream at once."""
        self._listeners.append(listener)

    def running(self) -> int:
        """Invocations under way (queued for a worker included)."""
        with self._changed:
            return self._running

    def _activity(self, change: int) -> None:
        with self._changed:
            self._running += change
        for listener in self._listeners:
            listener()

    # one invocation --------------------------------------------------------------------------

    def invoke(
        self,
        module: str,
        handler: str,
        function_name: str,
        timeout_s: float,
        event: dict[str, Any],
        memory_mb: int = 512,
    ) -> Any:
        """Run one invocation on a worker of ``function_name``.

        Raises ``WorkerBusy`` when no worker of the function came free within the queueing limit,
        ``InvocationTimeout`` when the handler ran past its timeout (times ``LOCAL_TIMEOUT_SCALE``;
        its worker is killed first), ``FunctionError`` when it raised or its worker died."""
        key = f"{function_name}\0{module}.{handler}"
        self._activity(+1)
        try:
            with self._checkout(key, module, handler, function_name) as worker:
                try:
                    return worker.invoke(timeout_s, timeout_s * self._scale, event, memory_mb)
                except InvocationTimeout:
                    raise InvocationTimeout(
                        f"{function_name} did not finish within its {timeout_s:g} s timeout; its invocation was stopped"
                    ) from None
        finally:
            self._activity(-1)

    @contextlib.contextmanager
    def _checkout(self, key: str, module: str, handler: str, function_name: str) -> Iterator[_Worker]:
        worker = self._acquire(key, module, handler, function_name)
        healthy = False
        try:
            result = worker
            yield result
            healthy = True
        except FunctionError:
            healthy = worker.alive()  # the handler raised: the worker serves on, as in Lambda
            raise
        finally:
            self._release(key, worker, healthy)

    def _acquire(self, key: str, module: str, handler: str, function_name: str) -> _Worker:
        deadline = time.monotonic() + self._queue_s
        ticket = object()
        retired: list[_Worker] = []
        with self._changed:
            function = self._functions.setdefault(key, _Function(self._limit))
            function.waiting.append(ticket)
            try:
                while True:
                    if self._closed:
                        raise WorkerBusy("the local stack is stopping")
                    if function.waiting[0] is ticket:  # first in the queue: take a worker if there is one
                        while function.idle:
                            worker = function.idle.pop()  # the most recently used: warm, the others may retire
                            if worker.alive():
                                function.busy.add(worker)
                                return worker
                            worker.kill()
                        if function.count < function.limit and self._room(function, retired):
                            function.starting += 1
                            break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        held = f"all {function.limit} workers of {function_name}"
                        if function.count < function.limit:
                            held = f"all {self._max_workers} workers of the stack (LOCAL_MAX_WORKERS)"
                        raise WorkerBusy(f"{held} stayed busy for {self._queue_s:g} s")
                    self._changed.wait(remaining)
            finally:
                function.waiting.remove(ticket)
                self._changed.notify_all()  # the next in the queue may go now
        for worker in retired:  # made room for this one
            worker.kill()
        # A cold start, outside the lock: other functions' requests go on meanwhile.
        try:
            worker = _Worker(self._paths, module, handler, function_name, INIT_TIMEOUT_S * self._scale)
        except BaseException:
            with self._changed:
                function.starting -= 1
                self._changed.notify_all()
            raise
        with self._changed:
            function.starting -= 1
            function.busy.add(worker)
            if self._closed:
                function.busy.discard(worker)
                worker.kill()
                raise WorkerBusy("the local stack is stopping")
        return worker

    def _room(self, function: _Function, retired: list[_Worker]) -> bool:
        """Whether one more worker may start (under the lock): under ``LOCAL_MAX_WORKERS`` in all,
        else once the longest-idle worker of another function is retired to make room."""
        if sum(f.count for f in self._functions.values()) < self._max_workers:
            return True
        idle = [(w.idle_since, id(w), f, w) for f in self._functions.values() if f is not function for w in f.idle]
        if not idle:
            return False
        _, _, owner, worker = min(idle, key=lambda entry: (entry[0], entry[1]))
        owner.idle.remove(worker)
        retired.append(worker)
        return True

    def _release(self, key: str, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()  # timed out, or died: stopped for good, before anyone hears back
        with self._changed:
            function = self._functions[key]
            function.busy.discard(worker)
            if healthy and not self._closed:
                worker.idle_since = time.monotonic()
                function.idle.append(worker)
            elif healthy:
                worker.kill()
            self._changed.notify_all()

    # housekeeping ----------------------------------------------------------------------------

    def _reap(self) -> None:
        """Retire workers idle for longer than the idle limit (checked every few seconds)."""
        while True:
            with self._changed:
                if self._closed:
                    return
                self._changed.wait(min(5.0, self._idle_s))
                if self._closed:
                    return
                now = time.monotonic()
                retired: list[_Worker] = []
                for function in self._functions.values():
                    keep = [w for w in function.idle if now - w.idle_since < self._idle_s]
                    retired.extend(w for w in function.idle if w not in keep)
                    function.idle = keep
                if retired:
                    self._changed.notify_all()  # room under LOCAL_MAX_WORKERS
            for worker in retired:
                worker.close()

    def state(self) -> dict[str, dict[str, int]]:
        """Each function's workers (busy, idle, starting) and queued requests, for logs and tests."""
        with self._changed:
            return {
                key.split("\0", 1)[0]: {
                    "busy": len(f.busy),
                    "idle": len(f.idle),
                    "starting": f.starting,
                    "waiting": len(f.waiting),
                }
                for key, f in self._functions.items()
            }

    def pids(self) -> list[int]:
        with self._changed:
            return [
                int(w.process.pid or 0) for f in self._functions.values() for w in [*f.idle, *f.busy] if w.process.pid
            ]

    def shutdown(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop taking work, give running invocations ``grace_s`` to finish, then end every worker
        (an idle worker holds no state, so ending it loses nothing)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            idle = [w for f in self._functions.values() for w in f.idle]
            for function in self._functions.values():
                function.idle.clear()
        for worker in idle:
            worker.kill()
        deadline = time.monotonic() + grace_s
        with self._changed:
            while any(f.busy for f in self._functions.values()) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            busy = [w for f in self._functions.values() for w in f.busy]
        for worker in busy:
            worker.kill()
