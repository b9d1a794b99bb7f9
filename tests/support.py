"""Helpers the tests share: invoking a handler with its events/ payload, counting requests."""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def reset_caches() -> None:
    """Forget cached settings, clients and model so each test sees its own environment."""
    from chat_sessions import config, llm, push, store

    config.get_settings.cache_clear()
    push._client.cache_clear()
    push._subscribers_cache.clear()
    store.get_store.cache_clear()
    store.dynamodb_client.cache_clear()
    store.plain_dynamodb_client.cache_clear()
    llm.get_chat_model.cache_clear()
    from chat_sessions import events  # the domain events' EventBridge client

    events.events_client.cache_clear()


@dataclass
class LambdaContext:
    function_name: str = "chat-sessions-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:chat-sessions-test"
    aws_request_id: str = "test-request"
    remaining_millis: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def load_event(module: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{module}.json").read_text())
    return event


@dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def invoke(
    module: str,
    *,
    user: str | None = "alice",
    body: Any = None,
    raw_body: str | None = None,
    session: str | None = None,
    chat: str | None = None,
    message: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    keep_example_key: bool = False,
    base64_body: bool = False,
    context: Any = None,
) -> Result:
    """Call ``functions/<module>.py`` with its events/ payload, overriding what the test names."""
    event = copy.deepcopy(load_event(module))
    route_path = event["routeKey"].split(" ", 1)[1]
    params = dict(event.get("pathParameters") or {})
    if session is not None:
        params["sessionId"] = session
    if chat is not None:
        params["chatId"] = chat
    if message is not None:
        params["messageId"] = message
    raw_path = route_path
    for name, value in params.items():
        raw_path = raw_path.replace("{" + name + "}", value)
    event["rawPath"] = raw_path
    event["requestContext"]["http"]["path"] = raw_path
    if params:
        event["pathParameters"] = params
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    if user is None:
        del event["requestContext"]["authorizer"]
    else:
        claims["sub"] = user
    if not keep_example_key:
        event["headers"].pop("idempotency-key", None)
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if raw_body is not None:
        event["body"] = raw_body
        event["isBase64Encoded"] = base64_body
    elif body is not None:
        event["body"] = json.dumps(body)
    if query is not None:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    handler = importlib.import_module(module).lambda_handler
    response = handler(event, context or LambdaContext())
    text = response.get("body")
    return Result(response["statusCode"], json.loads(text) if text else None, response.get("headers") or {})


def stream_drained(base_url: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Wait until the local stack's table stream is drained: every change made before the call,
    and whatever its consumers wrote in turn, handled by every stream consumer
    (``GET /local/stream?drained``, local_stack/streams.py). Returns the stream's state; fails
    the test if it is not drained within ``timeout_s`` (a hung consumer, not a busy machine)."""
    import urllib.error
    import urllib.request

    url = f"{base_url.rstrip('/')}/local/stream?drained&timeout={timeout_s:g}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s + 60) as response:
            state: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"the stream was not drained within {timeout_s:g} s: {exc.read().decode()}") from exc
    return state


def table_items(table_name: str, raw: bool = False) -> list[dict[str, Any]]:
    """Every item in the table (tests only: the service never scans); ``raw`` in DynamoDB's wire
    format (``{"S": ...}``), to size items by DynamoDB's rules."""
    from boto3.dynamodb.types import TypeDeserializer

    endpoint, region = os.environ.get("DYNAMODB_ENDPOINT"), os.environ.get("AWS_DEFAULT_REGION")
    items = _moto_items(table_name, region) if endpoint is None else None
    if items is None:
        items = scan(_scan_client(endpoint, region), table_name)
    if raw:
        return items
    plain = TypeDeserializer()
    return [{name: plain.deserialize(value) for name, value in item.items()} for item in items]


def scan(client: Any, table_name: str) -> list[dict[str, Any]]:
    """Every item, in wire format, by a paginated ``Scan`` through the API."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def moto_table_model(table_name: str, region: str | None = None) -> Any | None:
    """moto's in-process model of the table (``mock_aws``, its default account), or None."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region or os.environ["AWS_DEFAULT_REGION"]]
    return backend.tables.get(table_name)


def _moto_items(table_name: str, region: str | None) -> list[dict[str, Any]] | None:
    """The table's items as a ``Scan`` would answer them, read from moto's in-process table
    (``mock_aws``), or None when the table is not there. A scan through the API cost a test of
    many small steps most of its time (botocore parsing every attribute of every item again);
    this reads the same items, in the same order (moto's ``all_items``), in the same wire format."""
    import sys

    if "moto.dynamodb.models" not in sys.modules or region is None:
        return None
    from moto.dynamodb.models.utilities import dynamo_json_dump

    table = moto_table_model(table_name, region)
    if table is None:
        return None
    wire = json.loads(dynamo_json_dump([item.to_json()["Attributes"] for item in table.all_items()]))
    return [{name: _as_parsed(value) for name, value in item.items()} for item in wire]


def _as_parsed(value: dict[str, Any]) -> dict[str, Any]:
    """A wire-format attribute value as botocore parses it (binary base64-decoded)."""
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {kind: base64.b64decode(inner)}
    if kind == "BS":
        return {kind: [base64.b64decode(v) for v in inner]}
    if kind == "M":
        return {kind: {k: _as_parsed(v) for k, v in inner.items()}}
    if kind == "L":
        return {kind: [_as_parsed(v) for v in inner]}
    return value


@functools.cache
def _scan_client(endpoint: str | None, region: str | None) -> Any:
    """One client per endpoint for :func:`table_items` (a new one took 25 ms, as long as the
    scan; moto serves a client made outside a ``mock_aws`` as any other)."""
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
