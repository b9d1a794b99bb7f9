"""POST /sessions/{sessionId}/chats/{chatId}/fork: a new chat sharing the chat's history up to a
seq; it becomes the active chat."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from chat_sessions import api
from chat_sessions.models import Chat, ForkChatRequest
from chat_sessions.services import branches
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/chats/<chatId>/fork",
    summary="Fork a chat at a message (the fork becomes the active chat)",
    tags=["chats"],
    responses=api.responses(201, Chat, 409, 413, 422),
)
def fork_chat(
    sessionId: str, chatId: str, body: Annotated[ForkChatRequest, Body()], key: api.IdempotencyKey = None
) -> Response[Any]:
    return api.respond(
        router,
        201,
        lambda: branches.fork_chat(get_store(), api.user_id(router), sessionId, chatId, body, api.request_key(router)),
    )


lambda_handler = api.lambda_handler_for(router)
