"""POST /sessions/{sessionId}/chats/{chatId}/regenerate: a new reply to the last user message."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.llm import get_chat_model
from chat_sessions.services import conversation
from chat_sessions.store import get_store

router = Router()


@router.post(
    "/sessions/<sessionId>/chats/<chatId>/regenerate",
    summary="Regenerate the last reply",
    tags=["messages"],
    responses=api.exchange_responses(409, 422, 429, 502, 504),
)
def regenerate(sessionId: str, chatId: str, key: api.IdempotencyKey = None, prefer: api.Prefer = None) -> Response[Any]:
    respond_async = api.prefers_async(router)
    return api.respond(
        router,
        202 if respond_async else 201,
        lambda: conversation.regenerate(
            get_store(),
            get_chat_model(),
            api.user_id(router),
            sessionId,
            chatId,
            api.request_key(router),
            respond_async=respond_async,
        ),
    )


lambda_handler = api.lambda_handler_for(router)
