"""GET /me/usage: the caller's counts, token usage and this month's budget."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.models import UserUsage
from chat_sessions.services import sessions
from chat_sessions.store import get_store

router = Router()


@router.get("/me/usage", summary="The caller's usage", tags=["usage"], responses=api.responses(200, UserUsage))
def get_usage() -> Response[Any]:
    return api.respond(router, 200, lambda: sessions.get_usage(get_store(), api.user_id(router)))


lambda_handler = api.lambda_handler_for(router)
