"""GET /sessions: the caller's sessions, newest first, a page at a time; ``status`` lists one
status, and without it archived sessions are left out."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from chat_sessions import api
from chat_sessions.models import SessionPage
from chat_sessions.services import sessions
from chat_sessions.store import get_store

router = Router()


@router.get(
    "/sessions", summary="List sessions, newest first", tags=["sessions"], responses=api.responses(200, SessionPage)
)
def list_sessions(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    status: Annotated[
        Literal["active", "paused", "archived"] | None,
        Query(description="Only sessions with this status; without it, every session but the archived ones."),
    ] = None,
) -> Response[Any]:
    return api.respond(
        router, 200, lambda: sessions.list_sessions(get_store(), api.user_id(router), limit, cursor, status)
    )


lambda_handler = api.lambda_handler_for(router)
