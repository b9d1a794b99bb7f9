"""The races run 20 threads against one moto server that answers one request at a time (as
DynamoDB applies each atomically), so a request can wait behind the other 19. On a busy machine
that wait passed the store's 5 s read timeout: the SDK's replays and then a ``503`` made a race
fail because the machine was slow, not because an invariant broke. Here the store waits as long
as the test does; lost answers and timeouts have tests of their own (``tests/unit/test_contention.py``,
the fault tier), with the production timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.config import Config

from tests.support import reset_caches


@pytest.fixture(autouse=True)
def patient_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chat_sessions import store

    production = store._client_config()
    monkeypatch.setattr(store, "_client_config", lambda: production.merge(Config(read_timeout=300)))
    reset_caches()
    yield
    reset_caches()
