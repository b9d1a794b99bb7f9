"""Long histories in seconds: message items written straight to the table, as the service writes them.

Sending 10,000 messages through the API would take long; what a send costs depends only on
the items already stored, so the benchmark and ``tests/test_cost.py`` write those items
directly, in the shape ``MessageStore.append_user`` / ``MessageStore.append_reply``
write them (keys from :mod:`chat_sessions.keys`), and move the chat's ``messageCount`` and
usage totals (and the session's) as those transactions would. Messages alternate
user/assistant from seq 1, every user message answered.

:func:`snapshot` and :func:`rewind` undo a measured send (its two new messages and the counter
changes), so every measured send runs at exactly the seeded length.

All functions take a boto3 *resource-level* client (``boto3.resource("dynamodb").meta.client``,
the kind the store uses), which accepts plain Python values.
"""

from __future__ import annotations

import time
from typing import Any

from chat_sessions import keys
from chat_sessions.clock import utc_now
from chat_sessions.context_window import estimate_tokens
from chat_sessions.ids import message_id, new_id

CONTENT_CHARS = 400
_FILLER = "The quick brown fox jumps over the lazy dog while the benchmark keeps counting bytes. "
Item = dict[str, Any]


def text(seq: int, chars: int = CONTENT_CHARS) -> str:
    """A distinct message of exactly ``chars`` characters."""
    head = f"Message {seq}. "
    return (head + _FILLER * (chars // len(_FILLER) + 1))[:chars]


def message_items(user_id: str, session_id: str, chat_id: str, first_seq: int, last_seq: int, model: str) -> list[Item]:
    """Items for seqs ``first_seq..last_seq``: odd seqs are the user's, even ones the replies."""
    now = utc_now()
    items: list[Item] = []
    for seq in range(first_seq, last_seq + 1):
        content = text(seq)
        base: Item = {
            **keys.message_key(user_id, session_id, chat_id, seq),
            "type": "message",
            "messageId": message_id(new_id(), seq),  # as the service names them: the id carries its seq
            "chatId": chat_id,
            "sessionId": session_id,
            "seq": seq,
            "content": content,
            "tokens": estimate_tokens(content),
            "createdAt": now,
        }
        if seq % 2:
            items.append({**base, "role": "user", "status": "complete"})
        else:
            prompt = estimate_tokens(text(seq - 1))
            completion = estimate_tokens(content)
            items.append(
                {
                    **base,
                    "role": "assistant",
                    "status": "complete",
                    "model": model,
                    "promptTokens": prompt,
                    "completionTokens": completion,
                    "totalTokens": prompt + completion,
                    "replyToSeq": seq - 1,
                }
            )
    return items


def _batch_put(client: Any, table_name: str, items: list[Item]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        delay = 0.01
        while requests:
            response = client.batch_write_item(RequestItems={table_name: requests})
            requests = response.get("UnprocessedItems", {}).get(table_name, [])
            if requests:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)


def seed_history(
    client: Any, table_name: str, user_id: str, session_id: str, chat_id: str, count: int, model: str
) -> None:
    """Give a fresh chat (no message yet) a history of ``count`` messages."""
    items = message_items(user_id, session_id, chat_id, 1, count, model)
    _batch_put(client, table_name, items)
    usage = {
        field: sum(int(i.get(field, 0)) for i in items) for field in ("promptTokens", "completionTokens", "totalTokens")
    }
    values: Item = {":n": count, ":zero": 0, **{f":{k}": v for k, v in usage.items()}}
    usage_expr = ", ".join(f"{k} = {k} + :{k}" for k in usage)
    client.update_item(
        TableName=table_name,
        Key=dict(keys.chat_key(user_id, session_id, chat_id)),
        UpdateExpression=f"SET messageCount = messageCount + :n, {usage_expr}",
        ConditionExpression="messageCount = :zero",
        ExpressionAttributeValues=values,
    )
    client.update_item(
        TableName=table_name,
        Key=dict(keys.session_key(user_id, session_id)),
        UpdateExpression=f"SET messageCount = messageCount + :n, {usage_expr}",
        ExpressionAttributeValues={k: v for k, v in values.items() if k != ":zero"},
    )


def snapshot(client: Any, table_name: str, user_id: str, session_id: str, chat_id: str) -> tuple[Item, Item]:
    """The session and chat items as they are now, for :func:`rewind`."""
    session = client.get_item(
        TableName=table_name, Key=dict(keys.session_key(user_id, session_id)), ConsistentRead=True
    )["Item"]
    chat = client.get_item(
        TableName=table_name, Key=dict(keys.chat_key(user_id, session_id, chat_id)), ConsistentRead=True
    )["Item"]
    return session, chat


def rewind(client: Any, table_name: str, saved: tuple[Item, Item], seqs: list[int]) -> None:
    """Undo sends: delete the messages with ``seqs`` and put the saved session and chat back."""
    session, chat = saved
    pk = chat[keys.PK]
    for seq in seqs:
        client.delete_item(TableName=table_name, Key={keys.PK: pk, keys.SK: keys.message_sk(chat["chatId"], seq)})
    client.put_item(TableName=table_name, Item=session)
    client.put_item(TableName=table_name, Item=chat)
