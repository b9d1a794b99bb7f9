"""GET /sessions/{sessionId}: one session."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.models import Session
from chat_sessions.services import sessions
from chat_sessions.store import get_store

router = Router()


@router.get("/sessions/<sessionId>", summary="Get a session", tags=["sessions"], responses=api.responses(200, Session))
def get_session(sessionId: str) -> Response[Any]:
    return api.respond(router, 200, lambda: sessions.get_session(get_store(), api.user_id(router), sessionId))


lambda_handler = api.lambda_handler_for(router)
