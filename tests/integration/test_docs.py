"""``/openapi.json`` and ``/docs`` on the running stack: public, and the same document as committed."""

from __future__ import annotations

import json

import httpx

from local_stack.template import ROOT, routes


def test_openapi_json_is_served_without_a_token(stack: str) -> None:
    response = httpx.get(f"{stack}/openapi.json", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    assert served == json.loads((ROOT / "openapi.json").read_text())
    assert set(served["paths"]) == {route.path for route in routes()}


def test_docs_serve_swagger_ui_from_the_stack_itself(stack: str) -> None:
    page = httpx.get(f"{stack}/docs", timeout=60)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text and "/sessions/{sessionId}/chats" in page.text
    for asset, kind in [("/docs/swagger-ui-bundle.min.js", "javascript"), ("/docs/swagger-ui.min.css", "css")]:
        assert asset in page.text
        response = httpx.get(f"{stack}{asset}", timeout=60)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert len(response.content) > 10_000
    assert httpx.get(f"{stack}/docs?format=json", timeout=60).json()["info"]["title"] == "chat-sessions"
