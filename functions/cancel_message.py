"""POST /sessions/{sessionId}/chats/{chatId}/messages/{messageId}/cancel: stop a reply being
generated; what it generated so far is kept."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.models import Message
from chat_sessions.services import replies
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/chats/<chatId>/messages/<messageId>/cancel",
    summary="Cancel a reply being generated",
    tags=["messages"],
    responses=api.responses(200, Message, 409, 422),
)
def cancel_message(sessionId: str, chatId: str, messageId: str, key: api.IdempotencyKey = None) -> Response[Any]:
    return api.respond(
        router, 200, lambda: replies.cancel(get_store(), api.user_id(router), sessionId, chatId, messageId)
    )


lambda_handler = api.lambda_handler_for(router)
