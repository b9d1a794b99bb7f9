"""The running local stack and HTTP helpers shared by the integration tests.

One stack (``python -m local_stack`` on an ephemeral port, embedded DynamoDB, local model)
serves every test that asks for ``stack``; each test works as users of its own, so tests never
see each other's data. Tests that need a differently configured stack start their own.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import pytest

from local_stack.token import make_token
from tests.servers import child

T = TypeVar("T")

# What the test process's environment must not leak into the stack: tests/conftest.py sets
# OPENAI_API_KEY, which would point the stack at api.openai.com instead of its local model.
CLEAN_ENV = {
    "PORT": "0",
    "OPENAI_API_KEY": "",
    "OPENAI_BASE_URL": "",
    "OPENAI_API_KEY_PARAMETER": "",
    "OPENAI_MODEL": "",
    "DYNAMODB_ENDPOINT": "",
    "TABLE_NAME": "chat-sessions-local",
    "LOCAL_JWT_SECRET": "",
    "LOCAL_DATA_DIR": "",  # a developer's own data directory stays out of the tests' stacks
    "LOCAL_DYNAMODB": "",
    # A worker per function the tests reach (the template has about 35): past LOCAL_MAX_WORKERS
    # a stack replaces idle workers, and a run that walks every operation, as Schemathesis does,
    # started each function's worker again and again (a third of its workers' CPU). The limit
    # itself is tested in test_gateway.py.
    "LOCAL_MAX_WORKERS": "64",
}


# How long a test's HTTP request may wait for an answer: as long as pytest-timeout gives the whole
# test (pyproject.toml), so only a hung stack ends it. A busy machine can keep a request of a race
# queued for a worker, and starting cold workers, far longer than a minute.
HTTP_TIMEOUT = 900.0


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_stack(**env: str) -> Iterator[str]:
    """``python -m local_stack`` on a free port; yields its base URL."""
    with child(["-m", "local_stack"], "ready ", env={**CLEAN_ENV, **env}, timeout=120) as (_, url):
        yield url


# `make e2e API_URL=... TOKEN=... [TOKEN2=...]`: the tests marked ``e2e`` against any base URL (a
# deployed stack, `make run`), as the users those tokens belong to; the others are deselected.
E2E_API_URL = os.environ.get("E2E_API_URL", "").strip().rstrip("/")
E2E_TOKENS = [t.strip() for t in (os.environ.get("E2E_TOKEN", ""), os.environ.get("E2E_TOKEN2", "")) if t.strip()]
_e2e_users: dict[str, str] = {}  # a test's user names -> the given tokens, in order of first use


@pytest.fixture(scope="session")
def stack() -> Iterator[str]:
    """The shared stack, or E2E_API_URL. MAX_ACTIVE_SESSIONS is raised for the pagination tests
    and for Schemathesis, whose stateful phase creates many sessions (a chain that meets
    ``session_limit_reached`` at its first step tests nothing after it); the quota itself is
    tested where it is enforced (tests/unit, tests/concurrency)."""
    if E2E_API_URL:
        yield E2E_API_URL
        return
    with local_stack(MAX_ACTIVE_SESSIONS="100000") as url:
        yield url


@pytest.fixture(scope="session")
def table_stack(dynamodb_endpoint: str) -> Iterator[tuple[str, str]]:
    """A stack on the tests' moto server (``DYNAMODB_ENDPOINT``), a table of its own, so a test
    can read the table itself: ``(url, table)``. Shared by the tests that need one (each works as
    users of its own, and reads only their items), as starting a stack costs about 4 CPU-s."""
    import uuid

    table = f"chat-sessions-tables-{uuid.uuid4().hex[:8]}"
    with local_stack(DYNAMODB_ENDPOINT=dynamodb_endpoint, TABLE_NAME=table) as url:
        yield url, table


def new_user(name: str = "user") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def _token_for(user: str) -> str:
    """A token for ``user``: minted locally, or in e2e mode the next given token (a test's
    first user is TOKEN's owner, its second TOKEN2's)."""
    if not E2E_API_URL:
        return make_token(user)
    if user not in _e2e_users:
        if len(_e2e_users) == len(E2E_TOKENS):
            pytest.fail(f"this test needs more users than the {len(E2E_TOKENS)} token(s) given (TOKEN, TOKEN2)")
        _e2e_users[user] = E2E_TOKENS[len(_e2e_users)]
    return _e2e_users[user]


def client(url: str, user: str | None = None, token: str | None = None) -> httpx.Client:
    """An HTTP client for the stack, authenticated as ``user`` (or with ``token``)."""
    headers = {}
    if user is not None or token is not None:
        headers["Authorization"] = f"Bearer {token or _token_for(str(user))}"
    return httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT)


def _session_ids(http: httpx.Client) -> set[str]:
    return {s["sessionId"] for s in all_pages(http, "/sessions")}


@pytest.fixture(autouse=True)
def _e2e_cleanup() -> Iterator[None]:
    """In e2e mode the users are real and keep their data: each test's new sessions are deleted
    after it (their quota of active sessions is small), and its user names start afresh."""
    if not E2E_API_URL:
        yield
        return
    _e2e_users.clear()
    before = {}
    for token in E2E_TOKENS:
        with client(E2E_API_URL, token=token) as http:
            before[token] = _session_ids(http)
    yield
    for token in E2E_TOKENS:
        with client(E2E_API_URL, token=token) as http:
            for sid in _session_ids(http) - before[token]:
                http.delete(f"/sessions/{sid}")


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else None


def error_code(response: httpx.Response, status: int) -> str:
    """The contract's error body: ``{"error": {"code", "message"}}``; returns the code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    code = body["error"]["code"]
    assert isinstance(code, str)
    return code


def all_pages(http: httpx.Client, path: str, limit: int = 100, **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, following ``nextCursor``."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = ok(http.get(path, params={"limit": limit, **params, **({"cursor": cursor} if cursor else {})}))
        items.extend(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            return items


def race(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in 0..n-1 on n threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e(users=1): also runs against any base URL (make e2e): needs only the HTTP API and that many users",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The contract's default secret is 16 bytes; PyJWT warns on every HMAC key under 32.
    here = str(__file__).rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"))
    if not E2E_API_URL:
        return
    # e2e mode: only the tests marked e2e, and only those the given tokens have enough users for.
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        mark = item.get_closest_marker("e2e")
        users = mark.kwargs.get("users", 1) if mark else None
        (keep if users is not None and users <= len(E2E_TOKENS) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
