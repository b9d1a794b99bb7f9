"""Shared fixtures: environment, the moto table built from template.yaml, handler invocation."""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "common" / "python"), str(ROOT / "functions"), str(ROOT)]

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "chat-sessions-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_DEV": "false",
        "OPENAI_API_KEY": "test-key",
        # Stacks the tests start allow each function ten times its template timeout (see
        # local_stack/workers.py): on a busy machine a timeout must mean the code hangs.
        "LOCAL_TIMEOUT_SCALE": "10",
    }
)
for name in ("DYNAMODB_ENDPOINT", "OPENAI_BASE_URL", "OPENAI_API_KEY_PARAMETER"):
    os.environ.pop(name, None)

from tests.data_stack import pytest_runtest_protocol  # noqa: E402, F401 - runs each test in a roomy frame stack chunk
from tests.garbage_collector import pytest_collection_finish  # noqa: E402, F401 - freezes what collection made
from tests.parallel import (  # noqa: E402, F401 - xdist hooks (groups, summaries), made this conftest's own
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_testnodedown,
    pytest_unconfigure,
    pytest_xdist_auto_num_workers,
    pytest_xdist_make_scheduler,
)
from tests.servers import dynamodb_server  # noqa: E402
from tests.support import reset_caches  # noqa: E402
from tests.upstream import Upstream, upstream  # noqa: E402

try:  # Property tests: no per-example deadline, no "too slow" health check, both timed on the
    # machine the tests run on, which may be busy: a property test fails on what the code does.
    from hypothesis import HealthCheck, settings

    settings.register_profile("tests", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("tests")
except ImportError:
    pass


@contextmanager
def moto_table() -> Iterator[str]:
    """A fresh moto account with the table created from the definition in template.yaml."""
    from unittest import mock

    from moto import mock_aws

    from local_stack import template
    from local_stack.dynamodb import patch_moto

    patch_moto()
    parsed = _table_template()
    with mock_aws():
        # mock_aws unsets boto3's default session; the process's one takes its place
        # (_moto_session: one botocore loader, built-in handlers registered once).
        import boto3

        boto3.DEFAULT_SESSION = _moto_session()
        reset_caches()
        # What made a table cost a quarter of a second was not moto but a new boto3 client and
        # parsing template.yaml twice; both are made once per process (moto serves a client in
        # every mock_aws, each time with a fresh account). Only the table's resource is copied
        # for each table (copying the whole template took 30 ms).
        with mock.patch.object(template, "load", lambda *_: copy.deepcopy(parsed)):
            template.ensure_table(_setup_client(), os.environ["TABLE_NAME"])
        yield os.environ["TABLE_NAME"]
    reset_caches()


@functools.cache
def _moto_session() -> Any:
    """One boto3 session for every ``mock_aws`` of the process, with its one botocore loader (the
    models it loads are read-only; a long-lived session shares them among all its clients the
    same way: a new loader read the service models' JSON again, a third of a stale-read test's
    time). A new botocore session per test registered its 2,600 built-in handlers again:
    25 of the 38 ms a table took. Nothing of a test stays in it: each test's clients are made
    anew (``reset_caches``), each with its own copy of the session's handlers, moto's stubber
    (in botocore's built-in handlers since moto was imported) among them; its credentials are
    moto's fake ones, the same in every ``mock_aws``."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    session = boto3.Session(botocore_session=core)
    paths = _shared_loader().search_paths  # boto3 adds its own folder again for each session
    paths[:] = list(dict.fromkeys(paths))
    return session


@functools.cache
def _shared_loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


@functools.cache
def _table_template() -> dict[str, Any]:
    """template.yaml with its table's resource only: all ``ensure_table`` reads."""
    from local_stack import template

    resources = template.load()["Resources"]
    return {"Resources": {k: v for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}}


@functools.cache
def _setup_client() -> Any:
    import boto3

    return boto3.client("dynamodb")


@contextmanager
def scripted_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """A scripted OpenAI-compatible upstream, with the service pointed at it."""
    with upstream() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        # A deadline that tests the code, not the machine: a busy CI machine once took more than
        # two seconds for a send that read the key from SSM. Tests of the deadline set their own.
        monkeypatch.setenv("MODEL_TIMEOUT_SECONDS", "30")
        monkeypatch.setenv("MODEL_MAX_RETRIES", "0")
        reset_caches()
        yield server
    reset_caches()


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh moto table, created from the definition in template.yaml."""
    with moto_table() as name:
        yield name


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """A scripted OpenAI-compatible upstream, with the service pointed at it."""
    with scripted_model(monkeypatch) as server:
        yield server


@pytest.fixture(scope="module")
def module_table() -> Iterator[str]:
    """``table``, shared by the tests of one module (for modules whose tests change nothing;
    such a module checks that itself)."""
    with moto_table() as name:
        yield name


@pytest.fixture(scope="module")
def module_model() -> Iterator[Upstream]:
    """``model``, shared by the tests of one module."""
    with pytest.MonkeyPatch.context() as monkeypatch, scripted_model(monkeypatch) as server:
        yield server


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """One moto DynamoDB server (a child process on 127.0.0.1) for the whole run."""
    with dynamodb_server() as url:
        yield url


@pytest.fixture
def stream_table(dynamodb_endpoint: str) -> Iterator[tuple[Any, str, Any, str]]:
    """A fresh table with the template's stream on the tests' moto server (moto's in-process mock
    does not serve DescribeStream): ``(client, stream ARN, Streams client, table name)``."""
    import uuid

    import boto3

    from local_stack import streams
    from local_stack import template as cfn

    name = f"streamed-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    cfn.ensure_table(client, name, stream=True)
    arn = streams.enable_stream(client, name)
    yield client, arn, boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint), name
    client.delete_table(TableName=name)


@pytest.fixture
def server_table(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh table on the moto server, created from template.yaml, the service pointed at it."""
    import uuid

    import boto3

    from local_stack.template import ensure_table

    name = f"chat-sessions-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DYNAMODB_ENDPOINT", dynamodb_endpoint)
    monkeypatch.setenv("TABLE_NAME", name)
    ensure_table(boto3.client("dynamodb", endpoint_url=dynamodb_endpoint), name)
    reset_caches()
    yield name
    reset_caches()
