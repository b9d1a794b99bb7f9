"""The local stack's workers start with their function's template ``Environment`` (as Lambda's
execution environments do), under the stack's own settings (local_stack/template.py
``environment_for``, used by local_stack/workers.py). One pool, a handler that echoes its
environment, run as three functions of the template."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.template import ROOT
from local_stack.workers import WorkerPool


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with pytest.MonkeyPatch.context() as env:
        for name in ("MODEL_TIMEOUT_SECONDS", "MODEL_MAX_RETRIES", "CURSOR_KEY_SECRET", "OPENAI_API_KEY_PARAMETER"):
            env.delenv(name, raising=False)
        # The stack's own setting (workers start on first use, so it stays set while they run).
        env.setenv("MAX_ACTIVE_SESSIONS", "42")
        workers = WorkerPool([str(ROOT)], concurrency=1)
        try:
            yield workers
        finally:
            workers.shutdown()


def environment(pool: WorkerPool, function: str) -> dict[str, str]:
    found: dict[str, str] = pool.invoke("tests.env_echo", "handler", function, 30.0, {})
    return found


def test_a_model_function_gets_its_own_variables(pool: WorkerPool) -> None:
    env = environment(pool, "SendMessageFunction")
    assert (env["MODEL_TIMEOUT_SECONDS"], env["MODEL_MAX_RETRIES"]) == ("25", "0")  # from the template
    assert env["POWERTOOLS_SERVICE_NAME"] == "chat-sessions"  # from Globals
    assert env["MAX_ACTIVE_SESSIONS"] == "42"  # the stack's own setting wins
    assert "OPENAI_API_KEY_PARAMETER" not in env  # an SSM parameter: no local stand-in


def test_other_functions_do_not_get_them(pool: WorkerPool) -> None:
    env = environment(pool, "CreateSessionFunction")
    assert "MODEL_TIMEOUT_SECONDS" not in env and env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    listing = environment(pool, "ListSessionsFunction")
    assert "CURSOR_KEY_SECRET" not in listing  # a Secrets Manager secret: the local cursor key signs


def test_the_pool_reports_each_invocation_as_it_starts_and_ends(pool: WorkerPool) -> None:
    """What the stream poller follows (``on_activity``, ``running``): one invocation under way
    between its two reports, none after."""
    seen: list[int] = []
    pool.on_activity(lambda: seen.append(pool.running()))
    environment(pool, "GetSessionFunction")
    assert seen == [1, 0]
    assert pool.running() == 0
