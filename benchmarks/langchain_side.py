"""The alternative under test: LangChain's ``DynamoDBChatMessageHistory`` (whole history in one item).

It keeps a conversation as one item, ``{"SessionId": ..., "History": [every message]}``; its
``add_messages`` reads the item, appends in memory and writes the whole list back with an
unconditional ``UpdateItem``. One exchange here is what ``RunnableWithMessageHistory`` does per
turn: read ``messages`` to build the prompt, then ``add_messages([user, reply])`` (which reads
the item again and rewrites it). The messages are the same 400-character texts our side stores.

Only the benchmark imports this module (``requirements-bench.txt``); the tests do not need it.
"""

from __future__ import annotations

from typing import Any

from langchain_community.chat_message_histories import DynamoDBChatMessageHistory

# requirements-bench.txt installs langchain-core; `make typecheck` also runs where it is absent.
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    messages_to_dict,
)

from benchmarks.seed import text

TABLE = "langchain-chat-history"
KEY = "SessionId"


def ensure_table(client: Any, name: str = TABLE) -> None:
    """The table the class expects: a string hash key ``SessionId`` (its default)."""
    if name in client.list_tables()["TableNames"]:
        return
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)


def message(seq: int) -> BaseMessage:
    """Odd seqs are the user's, even ones the replies, as on our side."""
    return HumanMessage(content=text(seq)) if seq % 2 else AIMessage(content=text(seq))


def user_message(content: str) -> BaseMessage:
    return HumanMessage(content=content)


def history_dicts(count: int) -> list[dict[str, Any]]:
    """The ``History`` list exactly as ``add_messages`` would have written it."""
    dicts: list[dict[str, Any]] = messages_to_dict([message(seq) for seq in range(1, count + 1)])
    return dicts


def seed(table: Any, session_id: str, count: int) -> None:
    """Put a history of ``count`` messages (raises the server's error when it does not fit)."""
    table.put_item(Item={KEY: session_id, "History": history_dicts(count)})


def open_history(session_id: str, endpoint_url: str) -> DynamoDBChatMessageHistory:
    return DynamoDBChatMessageHistory(table_name=TABLE, session_id=session_id, endpoint_url=endpoint_url)


def client_of(history: DynamoDBChatMessageHistory) -> Any:
    """The boto3 client the history object sends its requests through (for the meter)."""
    return history.table.meta.client


def exchange(history: DynamoDBChatMessageHistory, next_seq: int) -> int:
    """One turn the way ``RunnableWithMessageHistory`` runs it; returns the length it read."""
    shown = len(history.messages)
    history.add_messages([message(next_seq), message(next_seq + 1)])
    return shown


def stored_count(table: Any, session_id: str) -> int:
    item = table.get_item(Key={KEY: session_id}, ConsistentRead=True).get("Item")
    return len(item["History"]) if item else 0
