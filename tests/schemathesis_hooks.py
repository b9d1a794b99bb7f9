"""Schemathesis hooks for the run against openapi.json (``tests/schemathesis.toml`` loads them).

One hook, and it drops only what the contract refuses by design and no schema can express;
each is named in the README ("The published API document, checked"):

- a schema-valid ``cursor`` this listing did not issue: a cursor is signed by the server, so
  its shape is in the document but which strings are signed cannot be
  (``400 validation_error`` with the detail type ``invalid_cursor``);
- an ``Idempotency-Key`` reused with another request to the same operation: the document states
  a key's form, but not which keys this caller already spent on another body
  (``422 idempotency_key_reused``);
- a method the document does not list, answered ``404 not_found`` where Schemathesis wants
  ``405``: deployed, API Gateway (HTTP API) answers a method no route has with 404 before any
  authorizer or function runs, and the local gateway answers the same (with the contract's
  error body); only a catch-all route per path could answer 405 there.

Every other failure, of every check, fails the run. The refusal must be exactly one of these
two (status, code and detail), so another 400 or 422 on the same request still fails.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

INVALID_CURSOR = (400, "validation_error", "invalid_cursor")
KEY_REUSED = (422, "idempotency_key_reused", None)


def refused_by_design(status: int, body: bytes) -> bool:
    """True when the answer is one of the two refusals above and nothing else."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(error, dict):
        return False
    details = error.get("details") or []
    detail_types = {d.get("type") for d in details if isinstance(d, dict)}
    for expected_status, code, detail in (INVALID_CURSOR, KEY_REUSED):
        if status == expected_status and error.get("code") == code and (detail is None or detail_types == {detail}):
            return True
    return False


def unrouted(status: int, body: bytes) -> bool:
    """True for the answer to a method no route has: 404, with the local gateway's
    ``not_found`` error body or API Gateway's own ``{"message": "Not Found"}``."""
    try:
        answer = json.loads(body)
        return status == 404 and (
            answer.get("error", {}).get("code") == "not_found" or answer == {"message": "Not Found"}
        )
    except (ValueError, AttributeError):
        return False


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except a refusal by design (see the module's docstring)."""
    code = getattr(failure, "code", None)
    if code == "ST202":  # positive_data_acceptance
        return not refused_by_design(response.status_code, response.content)
    if code == "ST204":  # unsupported_method
        return not unrouted(response.status_code, response.content)
    return True
