"""DELETE /me: erase every item of the caller (it continues on its own, from the table's stream)."""

import chat_sessions  # noqa: F401  (first: the collector pauses for the whole import, chat_sessions.coldstart)

# isort: split
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from chat_sessions import api
from chat_sessions.models import Erasure
from chat_sessions.services import erasure
from chat_sessions.store import get_store

router = Router()


@router.delete(
    "/me",
    summary="Erase everything of the caller",
    description="Answers at once; the erasure continues on its own and finishes within a minute or so. "
    "Until it has, creating a session answers 409 erasure_in_progress. A repeat answers 202 again.",
    tags=["usage"],
    responses=api.responses(202, Erasure),
)
def erase_me() -> Response[Any]:
    return api.respond(router, 202, lambda: erasure.start_erasure(get_store(), api.user_id(router)))


lambda_handler = api.lambda_handler_for(router)
