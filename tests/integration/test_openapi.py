"""The committed ``openapi.json`` is what the code generates, and it describes template.yaml's routes.

``make openapi`` regenerates it; this fails when someone changes a handler or a model and forgets.
"""

from __future__ import annotations

import json

from local_stack.openapi import document_json
from local_stack.template import ROOT, routes

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in METHODS}


def test_committed_openapi_json_is_current() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == document_json() + "\n", "openapi.json is stale: run `make openapi` and commit it"


def test_openapi_and_template_describe_the_same_routes() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    from_template = {(route.method, route.path) for route in routes()}
    assert len(from_template) == len(routes()), "a route is declared twice in template.yaml"
    assert _operations(document) == from_template


def test_every_operation_is_secured_and_documents_its_errors() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    assert document["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert {"401", "404"} <= set(operation["responses"]), (method, path)
