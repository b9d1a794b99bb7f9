"""Lambda-like execution for the local stack: each invocation runs in a worker process that
serves one request at a time, as a Lambda execution environment does.

Why processes and not threads: Powertools' resolver keeps the current event in a class
attribute (``BaseRouter.current_event``), which is safe in Lambda (one request per container)
but not across threads of one process. Worker processes keep that guarantee while concurrent
requests still race against DynamoDB the way concurrent Lambda invocations do.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

DEFAULT_CONCURRENCY = 8


def timeout_scale() -> float:
    """``LOCAL_TIMEOUT_SCALE`` (default 1; for tests): how long the gateway waits for an
    invocation before answering that the function timed out, as a multiple of the function's
    timeout plus the 30 s allowed for a cold worker. The wait starts when the request arrives, so
    it includes queueing for a free worker and starting one, which on a busy machine can take many
    times longer than in Lambda; the tests' stacks scale it so that a timeout there means code
    that hangs, not a slow machine. The handler's context still counts down from its template
    timeout, started when the handler starts."""
    value = float(os.environ.get("LOCAL_TIMEOUT_SCALE") or 1)
    if not value >= 1:
        raise ValueError(f"LOCAL_TIMEOUT_SCALE must be a number >= 1, not {value}")
    return value


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


def _exit_with(parent: int) -> None:
    """A worker outlives nothing: when the gateway dies (even by SIGKILL), its workers go too."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _init_worker(paths: list[str], parent: int) -> None:
    # Ctrl-C reaches the whole process group; the gateway stops its workers itself, so a worker
    # ignores SIGINT instead of printing a KeyboardInterrupt traceback mid-invocation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Powertools warns on every invocation that publishes no metrics (metrics are off locally).
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _invoke(
    module: str, handler: str, function_name: str, timeout_s: float, event: dict[str, Any], memory_mb: int = 512
) -> Any:
    """Runs inside a worker process: import the handler module once, call it."""
    function = getattr(importlib.import_module(module), handler)
    context = LambdaContext(
        function_name=function_name,
        aws_request_id=str(uuid.uuid4()),
        deadline=time.time() + timeout_s,
        memory_limit_in_mb=memory_mb,
    )
    return function(event, context)


class WorkerPool:
    """A fixed maximum of worker processes; each runs one invocation at a time."""

    def __init__(self, import_paths: list[str], concurrency: int | None = None) -> None:
        size = concurrency or int(os.environ.get("LOCAL_CONCURRENCY", DEFAULT_CONCURRENCY))
        self._pool = ProcessPoolExecutor(
            max_workers=size,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(import_paths, os.getpid()),
        )
        self._lock = threading.Lock()
        self._running: set[Future[Any]] = set()
        self._timeout_scale = timeout_scale()

    def invoke(
        self,
        module: str,
        handler: str,
        function_name: str,
        timeout_s: float,
        event: dict[str, Any],
        memory_mb: int = 512,
    ) -> Any:
        """Run one invocation; raises TimeoutError past the function's timeout (plus the time to
        start a cold worker, both times ``LOCAL_TIMEOUT_SCALE``)."""
        future = self._pool.submit(_invoke, module, handler, function_name, timeout_s, event, memory_mb)
        with self._lock:
            self._running.add(future)
        try:
            return future.result(timeout=(timeout_s + 30) * self._timeout_scale)  # + time to start a cold worker
        finally:
            with self._lock:
                self._running.discard(future)

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop taking work, give running invocations ``grace_s`` to finish, then end the workers
        (an idle worker holds no state, so ending it loses nothing; waiting for each to unload
        its modules would only slow the stop down)."""
        processes: list[Any] = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._running)
        wait(running, timeout=grace_s)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(2)
