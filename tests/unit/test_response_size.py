"""Responses must fit Lambda's 6 MB synchronous response payload, or deployed they are not the
contract's answer at all (API Gateway answers its own 502).

moto and the local stack have no such limit, so it is measured here on what the handler returns.
A page of messages is the one response whose size follows stored data: ten exchanges of the
largest message (32,000 emoji) and the longest stored reply (128 KiB of emoji) are 20 messages
of about 390,000 bytes each once JSON-escaped: 7.8 MB, over the limit on the default page.
"""

from __future__ import annotations

import json

from chat_sessions.config import get_settings
from chat_sessions.models import MAX_CONTENT
from tests.support import invoke
from tests.upstream import Reply, Upstream

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def test_a_page_of_the_largest_messages_fits_a_lambda_response(table: str, model: Upstream) -> None:
    model.default = Reply(content="\U0001f600" * (get_settings().max_reply_bytes // 4))
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"])
    for _ in range(10):
        sent = invoke("send_message", session=sid, chat=chat, body={"content": "\U0001f600" * MAX_CONTENT})
        assert sent.status == 201
    seen = 0
    cursor = None
    while True:
        query: dict[str, str] = {} if cursor is None else {"cursor": cursor}
        page = invoke("list_messages", session=sid, chat=chat, query=query)
        assert page.status == 200
        body = json.dumps(page.body, separators=(",", ":"))  # as Powertools writes it
        size = len(json.dumps({"statusCode": 200, "body": body}).encode())  # as the Lambda runtime sends it
        assert size <= LAMBDA_RESPONSE_LIMIT, size
        seen += len(page.body["items"])
        cursor = page.body["nextCursor"]
        if cursor is None:
            break
    assert seen == 20
