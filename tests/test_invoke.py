"""``make invoke``: every event in events/ runs through its function as the template defines it
(local_stack/invoke.py), with the function's template ``Environment``.

Functions and their events are found from template.yaml, so a new function's event is run
without touching this file. In-process (one cold start per function: cached settings and
clients reset) against a moto server and the local model; one run goes through ``make invoke``
itself, in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local_stack import eventbridge, invoke, model_server
from local_stack import template as cfn
from tests.support import reset_caches

TEMPLATE = cfn.load()
FUNCTIONS = sorted(cfn.functions(TEMPLATE))
EVENTS = cfn.ROOT / "events"


@pytest.fixture(scope="module")
def backends(dynamodb_endpoint: str) -> Iterator[dict[str, str]]:
    """A table of its own on the worker's moto server, the local model, and the local event bus."""
    table = f"chat-sessions-invoke-{uuid.uuid4().hex[:8]}"
    cfn.ensure_table(boto3.client("dynamodb", endpoint_url=dynamodb_endpoint), table)
    server, base_url = model_server.start_in_thread()
    bus_server, bus_url, _ = eventbridge.start_in_thread()
    try:
        yield {
            "DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "TABLE_NAME": table,
            "OPENAI_BASE_URL": base_url,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": bus_url,
        }
    finally:
        server.shutdown()
        bus_server.shutdown()


@pytest.fixture
def saved_environ() -> Iterator[None]:
    """``invoke.invoke`` replaces os.environ, as a fresh execution environment would."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()


def test_every_event_belongs_to_a_function() -> None:
    modules = {invoke.find_function(name, TEMPLATE).module for name in FUNCTIONS}
    orphans = sorted(path.stem for path in EVENTS.glob("*.json") if path.stem not in modules)
    assert orphans == [], "events/ files no function handles"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_each_event_runs_through_its_function(logical_id: str, backends: dict[str, str], saved_environ: None) -> None:
    function = invoke.find_function(logical_id, TEMPLATE)
    event = json.loads((EVENTS / f"{function.module}.json").read_text())
    for name in ("OPENAI_API_KEY_PARAMETER", "CURSOR_KEY_SECRET", "MODEL_TIMEOUT_SECONDS", "MAX_ACTIVE_SESSIONS"):
        os.environ.pop(name, None)
    environment = cfn.environment_for(logical_id, {**os.environ, **backends})
    declared = cfn.function_environment(logical_id, TEMPLATE)
    # The template's variables are there (ours win where set), and no AWS-only one.
    assert set(declared.variables) <= set(environment)
    assert environment["MAX_ACTIVE_SESSIONS"] == declared.variables["MAX_ACTIVE_SESSIONS"]
    assert not set(declared.left_out) & set(environment)
    reset_caches()
    if event.get("type") == "REQUEST":  # the WebSocket API's $connect authorizer
        # Its issuer (the stack's Cognito pool, or JwtIssuer) has no local value: it refuses,
        # with the one message API Gateway answers 401 to.
        assert "JWT_ISSUER" in declared.left_out
        with pytest.raises(Exception, match="Unauthorized"):
            invoke.invoke(function, event, environment)
        return
    result: Any = invoke.invoke(function, event, environment)
    if "eventType" in event.get("requestContext", {}):  # a WebSocket route: a frame, or nothing
        assert isinstance(result, dict) and result["statusCode"] == 200, result
        if "body" in result:
            assert json.loads(result["body"])["type"] in ("subscribed", "error"), result
        return
    if "routeKey" in event:
        assert isinstance(result, dict) and 200 <= result["statusCode"] < 500, result
        body: Any = json.loads(result["body"]) if result.get("body") else None
        if result["statusCode"] >= 400:
            assert body["error"]["code"], body  # the contract's error body, not a crash
    elif "Records" in event:  # a stream batch: nothing failed
        assert result == {"batchItemFailures": []}, result
    else:  # an asynchronous invocation (the generating function): how it ended
        assert isinstance(result, dict) and result.get("outcome") in ("complete", "failed", "stopped", "duplicate")


def test_model_functions_get_their_template_timeouts(backends: dict[str, str]) -> None:
    """Variables only some functions have (the model call's deadline) reach only those."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")} | backends
    send = cfn.environment_for("SendMessageFunction", base)
    create = cfn.environment_for("CreateSessionFunction", base)
    assert send["MODEL_TIMEOUT_SECONDS"] == "25" and send["MODEL_MAX_RETRIES"] == "0"
    assert "MODEL_TIMEOUT_SECONDS" not in create
    listing = cfn.function_environment("ListSessionsFunction", TEMPLATE)
    assert "CURSOR_KEY_SECRET" in listing.left_out and "Secret" in listing.left_out["CURSOR_KEY_SECRET"]


def test_make_invoke_prints_the_response_and_writes_the_table(backends: dict[str, str]) -> None:
    env = {**os.environ, **backends, "PYTHONPATH": str(cfn.ROOT)}
    result = subprocess.run(
        ["make", "-s", "invoke", "FN=CreateSessionFunction", "EVENT=events/create_session.json", "ARGS=-v"],
        cwd=cfn.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 201
    session = json.loads(response["body"])
    assert "env POWERTOOLS_LOGGER_LOG_EVENT=false" in result.stderr  # the template's, applied
    table = boto3.resource("dynamodb", endpoint_url=backends["DYNAMODB_ENDPOINT"]).Table(backends["TABLE_NAME"])
    stored = [item for item in table.scan()["Items"] if item.get("sessionId") == session["sessionId"]]
    assert stored, "the session was not written to the table make invoke was pointed at"


def test_an_unknown_function_names_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="CreateSessionFunction"):
        invoke.find_function("NoSuchFunction", TEMPLATE)
