"""GET /sessions/{sessionId}/chats: a session's chats, oldest first, a page at a time."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from chat_sessions import api
from chat_sessions.models import ChatPage
from chat_sessions.services import chats
from chat_sessions.store import get_store

router = Router()


@router.get(
    "/sessions/<sessionId>/chats",
    summary="List a session's chats, oldest first",
    tags=["chats"],
    responses=api.responses(200, ChatPage),
)
def list_chats(
    sessionId: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response[Any]:
    return api.respond(
        router, 200, lambda: chats.list_chats(get_store(), api.user_id(router), sessionId, limit, cursor)
    )


lambda_handler = api.lambda_handler_for(router)
