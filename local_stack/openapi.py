"""The OpenAPI document, generated from the handlers' own routes and models.

Each function module declares its route on a Powertools ``Router``; this module includes every
router named by ``template.yaml`` into one resolver (the same ``build_app`` the handlers use)
and asks Powertools for the schema, so the document cannot describe an API other than the one
deployed. ``python -m local_stack.openapi > openapi.json`` regenerates the committed copy; the
local stack serves it at ``/openapi.json`` and a test fails when the committed copy is stale.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tomllib
from typing import Any

from local_stack.template import ROOT, Route, layer_dirs, routes

TITLE = "chat-sessions"
DESCRIPTION = (
    "Many sessions per user, many LLM chats per session, exactly one active chat per session. "
    "Every request carries `Authorization: Bearer <JWT>`; the caller is the token's `sub` claim. "
    'Errors are `{"error": {"code", "message", "details"?}}`.'
)
_POWERTOOLS_PARAM = re.compile(r"<(\w+)>")


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def add_import_paths(found: list[Route] | None = None) -> list[str]:
    """Put the layers and every function's code directory on ``sys.path`` (as Lambda does
    with ``/opt/python`` and ``/var/task``); returns the paths in import order."""
    found = routes() if found is None else found
    paths: list[str] = []
    for directory in [*layer_dirs(), *(route.code_dir for route in found)]:
        if str(directory) not in paths:
            paths.append(str(directory))
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    return paths


def handler_modules(found: list[Route] | None = None) -> list[str]:
    """Every function module behind a route, in template order, each once."""
    found = routes() if found is None else found
    return list(dict.fromkeys(route.module for route in found))


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict, paths in the template's ``{param}`` style."""
    return dict(json.loads(document_json()))


def document_json() -> str:
    """The OpenAPI document as Powertools renders it (stable: same code, same text)."""
    found = routes()
    add_import_paths(found)
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    from chat_sessions.api import build_app

    app = build_app(*(importlib.import_module(module).router for module in handler_modules(found)))
    text = app.get_openapi_json_schema(
        title=TITLE,
        version=version(),
        description=DESCRIPTION,
        security_schemes={
            "bearerAuth": HTTPBearer(bearerFormat="JWT", description="A JWT; its `sub` claim is the caller's user id.")
        },
        security=[{"bearerAuth": []}],
    )
    # Powertools writes path parameters in OpenAPI's ``{name}`` style already; should a version
    # ever emit its own ``<name>`` style, convert the path keys so they read as template.yaml's.
    doc = json.loads(text)
    if any(_POWERTOOLS_PARAM.search(path) for path in doc.get("paths", {})):
        doc["paths"] = {_POWERTOOLS_PARAM.sub(r"{\1}", path): item for path, item in doc["paths"].items()}
    _drop_default_validation_responses(doc)
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _drop_default_validation_responses(doc: dict[str, Any]) -> None:
    """Powertools documents a 422 ``HTTPValidationError`` on every validated route, but this API
    answers validation errors with 400 and its own error body (``api.responses`` documents it);
    only an ``Idempotency-Key`` reuse is a 422 here. Remove the default so the document says
    what the API does."""
    default = "#/components/schemas/HTTPValidationError"
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            response = operation.get("responses", {}).get("422", {})
            if response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") == default:
                del operation["responses"]["422"]
    if default not in json.dumps(doc.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)


def main() -> None:
    sys.stdout.write(document_json() + "\n")


if __name__ == "__main__":
    main()
