"""DynamoDB access: the only package that talks to boto3, split by aggregate.

- :mod:`.table`: the low-level requests (every call classified, transactions with tokens,
  paging that never stops short, purging);
- :mod:`.outcomes`: what an error means (condition failed at item i, collision, throttled,
  unavailable), decided in one place;
- :mod:`.sessions`, :mod:`.chats`, :mod:`.messages`: one access pattern per method, each
  invariant kept by a DynamoDB condition or transaction named in its docstring.

Python never decides a race by reading and then writing unconditionally. Where a write is
optimistic (it names the value it expects to replace), a lost race surfaces as
:class:`ConditionFailed` or :class:`Collision`, and the service layer retries from a fresh read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from chat_sessions.config import get_settings
from chat_sessions.store.branches import BranchStore
from chat_sessions.store.chats import ChatStore
from chat_sessions.store.messages import USAGE_FIELDS, MessageStore
from chat_sessions.store.outcomes import Collision, ConditionFailed
from chat_sessions.store.sessions import SessionStore
from chat_sessions.store.table import Item, Table, new_token, plain

__all__ = [
    "USAGE_FIELDS",
    "BranchStore",
    "ChatStore",
    "Collision",
    "ConditionFailed",
    "Item",
    "MessageStore",
    "SessionStore",
    "Store",
    "Table",
    "dynamodb_client",
    "get_store",
    "new_token",
    "plain",
    "plain_dynamodb_client",
]


@dataclass(frozen=True)
class Store:
    """The table and its three aggregates, and the branches (forks) across chats."""

    table: Table
    sessions: SessionStore
    chats: ChatStore
    messages: MessageStore
    branches: BranchStore

    @classmethod
    def on(cls, table_name: str, client: Any) -> Store:
        table = Table(table_name, client)
        return cls(table, SessionStore(table), ChatStore(table), MessageStore(table), BranchStore(table))


def _client_config() -> Config:
    # Standard retries replay a request whose answer was lost (5xx, timeout) with the same
    # parameters, ClientRequestToken included, so a committed transaction is not applied twice.
    # Three attempts in all (botocore's ``max_attempts`` would count retries, one more).
    return Config(
        retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5, tcp_keepalive=True
    )


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    """One client per container, reused across invocations (connection reuse matters more
    than anything else for DynamoDB latency in Lambda)."""
    resource = boto3.resource("dynamodb", endpoint_url=get_settings().dynamodb_endpoint, config=_client_config())
    return resource.meta.client


@lru_cache(maxsize=1)
def get_store() -> Store:
    return Store.on(get_settings().table_name, dynamodb_client())


@lru_cache(maxsize=1)
def plain_dynamodb_client() -> Any:
    """A low-level client for Powertools Idempotency, which serializes attribute values itself
    (the resource client above would serialize them a second time)."""
    return boto3.client("dynamodb", endpoint_url=get_settings().dynamodb_endpoint, config=_client_config())
