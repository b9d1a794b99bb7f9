"""DELETE /sessions/{sessionId}/chats/{chatId}: a chat and its messages."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.services import chats
from chat_sessions.store import get_store

router = Router()


@router.delete(
    "/sessions/<sessionId>/chats/<chatId>",
    summary="Delete a chat (if it was active, the session has none)",
    tags=["chats"],
    responses=api.responses(204, None),
)
def delete_chat(sessionId: str, chatId: str) -> Response[Any]:
    return api.respond(router, 204, lambda: chats.delete_chat(get_store(), api.user_id(router), sessionId, chatId))


lambda_handler = api.lambda_handler_for(router)
