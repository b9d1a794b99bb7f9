"""PATCH /sessions/{sessionId}/chats/{chatId}: rename a chat, change its model or system prompt."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.models import Chat, UpdateChatRequest
from chat_sessions.services import chats
from chat_sessions.store import get_store

router = Router()


@router.patch(
    "/sessions/<sessionId>/chats/<chatId>",
    summary="Update a chat's name, model or system prompt (null removes the prompt)",
    tags=["chats"],
    responses=api.responses(200, Chat, 413),
)
def update_chat(sessionId: str, chatId: str, body: Annotated[UpdateChatRequest, Body()]) -> Response[Any]:
    return api.respond(
        router, 200, lambda: chats.update_chat(get_store(), api.user_id(router), sessionId, chatId, body)
    )


lambda_handler = api.lambda_handler_for(router)
