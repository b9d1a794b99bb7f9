"""GET /sessions/{sessionId}/chats/{chatId}/messages: a chat's messages by seq, a page at a time."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from chat_sessions import api
from chat_sessions.models import MessagePage
from chat_sessions.services import messages
from chat_sessions.store import get_store

router = Router()


@router.get(
    "/sessions/<sessionId>/chats/<chatId>/messages",
    summary="List a chat's messages",
    tags=["messages"],
    responses=api.responses(200, MessagePage),
)
def list_messages(
    sessionId: str,
    chatId: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
) -> Response[Any]:
    return api.respond(
        router,
        200,
        lambda: messages.list_messages(get_store(), api.user_id(router), sessionId, chatId, limit, cursor, order),
    )


lambda_handler = api.lambda_handler_for(router)
