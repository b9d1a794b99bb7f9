"""POST /sessions/{sessionId}/chats/{chatId}/activate: make this the session's active chat."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.models import Chat
from chat_sessions.services import chats
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/chats/<chatId>/activate",
    summary="Switch the active chat",
    tags=["chats"],
    responses=api.responses(200, Chat, 409, 422),
)
def activate_chat(sessionId: str, chatId: str, key: api.IdempotencyKey = None) -> Response[Any]:
    return api.respond(router, 200, lambda: chats.activate_chat(get_store(), api.user_id(router), sessionId, chatId))


lambda_handler = api.lambda_handler_for(router)
