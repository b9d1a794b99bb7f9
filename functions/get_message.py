"""GET /sessions/{sessionId}/chats/{chatId}/messages/{messageId}: one message; with ``wait``
(and ``after``), a long poll on a reply being generated."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from chat_sessions import api
from chat_sessions.models import Message
from chat_sessions.services import replies
from chat_sessions.store import get_store

router = Router()


@router.get(
    "/sessions/<sessionId>/chats/<chatId>/messages/<messageId>",
    summary="Get a message (long-poll a reply being generated)",
    tags=["messages"],
    responses=api.responses(200, Message),
)
def get_message(
    sessionId: str,
    chatId: str,
    messageId: str,
    wait: Annotated[
        int | None,
        Query(
            ge=1,
            le=replies.MAX_WAIT_SECONDS,
            description="Seconds to wait for a generating reply to grow past `after` characters or end.",
        ),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=10**7, description="Characters of the content already seen (with `wait`).")
    ] = None,
) -> Response[Any]:
    return api.respond(
        router,
        200,
        lambda: replies.get_message(get_store(), api.user_id(router), sessionId, chatId, messageId, wait, after),
    )


lambda_handler = api.lambda_handler_for(router)
