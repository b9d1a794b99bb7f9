"""Schemathesis hooks for the run against openapi.json (``tests/schemathesis.toml`` loads them).

One hook, and it drops only what the contract refuses by design and no schema can express;
each is named in the README ("The published API document, checked"):

- a schema-valid value that the resource's state refuses, each ``400 validation_error`` with one
  detail (place and type) the service gives only for it:

  - a ``cursor`` this listing did not issue: a cursor is signed by the server, so its shape is
    in the document but which strings are signed cannot be (``invalid_cursor``);
  - a fork's ``uptoSeq`` past the chat's last seq (the contract's ``400``; ``out_of_range``);
  - an edit of a message that is not a user message (``not_a_user_message``);
- an ``Idempotency-Key`` reused with another request to the same operation: the document states
  a key's form, but not which keys this caller already spent on another body
  (``422 idempotency_key_reused``);
- a method the document does not list, answered ``404 not_found`` where Schemathesis wants
  ``405``: deployed, API Gateway (HTTP API) answers a method no route has with 404 before any
  authorizer or function runs, and the local gateway answers the same (with the contract's
  error body); only a catch-all route per path could answer 405 there.

One operation is not run at all (``tests/schemathesis.toml``): ``DELETE /me`` erases the caller.
Run among the others, it would race them: the sessions the examples and stateful chains create
vanish under them (404s no link predicts), creates answer ``409 erasure_in_progress`` until the
erasure ends, and which answer a request meets depends on the erasure's progress, not on the
request, so the run would stop being repeatable. Pointing it at the second user would break
``object_level_authorization`` (it replays the first user's reads as the second) the same way.
Its answer (``202 {"status": "erasing"}``) and everything it does are tested by
``tests/unit/test_erasure.py``, ``tests/concurrency/test_erasure_race.py`` and the local stack's
end-to-end test (``tests/integration/test_erasure.py``).

Every other failure, of every check, fails the run. The refusal must be exactly one of these
two (status, code and detail), so another 400 or 422 on the same request still fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import schemathesis

STATE_REFUSALS = {
    (("query", "cursor"), "invalid_cursor"),
    (("body", "uptoSeq"), "out_of_range"),
    (("path", "messageId"), "not_a_user_message"),
}
"""(where, detail type) of each ``400 validation_error`` that a schema-valid request may meet."""


def refused_by_design(status: int, body: bytes) -> bool:
    """True when the answer is one of the refusals above and nothing else."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(error, dict):
        return False
    if status == 422:
        return error.get("code") == "idempotency_key_reused"
    details = error.get("details")
    if status != 400 or error.get("code") != "validation_error" or not isinstance(details, list) or len(details) != 1:
        return False
    detail = details[0]
    return isinstance(detail, dict) and (tuple(detail.get("loc") or ()), detail.get("type")) in STATE_REFUSALS


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


PEERS = ("owner", "other")
"""The two users of ``tests/schemathesis.toml`` (``[auth.wfc] peers``)."""


def auth_document(token: str, other_token: str) -> dict[str, Any]:
    """The Web Fuzzing Commons auth file for two users, each a fixed ``Authorization`` header."""
    return {
        "auth": [
            {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {value}"}]}
            for name, value in zip(PEERS, (token, other_token), strict=True)
        ]
    }


def write_auth_file(path: Path, token: str, other_token: str) -> None:
    path.write_text(json.dumps(auth_document(token, other_token)))


if __name__ == "__main__":  # python -m tests.schemathesis_hooks FILE TOKEN TOKEN2 (make schemathesis)
    if len(sys.argv) != 4 or not all(sys.argv[1:]):
        sys.exit("usage: python -m tests.schemathesis_hooks FILE TOKEN TOKEN2")
    write_auth_file(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
