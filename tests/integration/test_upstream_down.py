"""A stack whose model is unreachable: the user's message is kept, answered later or never."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import all_pages, client, error_code, free_port, local_stack, new_user, ok


@pytest.fixture(scope="module")
def broken_stack() -> Iterator[str]:
    """On moto: what is tested is the model's side, and a stack on moto starts with about 2 CPU-s
    less than one on DynamoDB Local."""
    closed = free_port()  # nothing listens there
    with local_stack(
        LOCAL_DYNAMODB="moto",
        OPENAI_BASE_URL=f"http://127.0.0.1:{closed}/v1",
        OPENAI_API_KEY="x",
        MODEL_TIMEOUT_SECONDS="2",
        MODEL_MAX_RETRIES="0",
    ) as url:
        yield url


def test_send_with_the_model_down_keeps_the_message_unanswered(broken_stack: str) -> None:
    with client(broken_stack, new_user()) as http:
        sid = ok(http.post("/sessions", json={"name": "offline"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
        response = http.post(f"/sessions/{sid}/messages", json={"content": "are you there?"})
        assert response.status_code in (502, 504), response.text
        assert (
            error_code(response, response.status_code)
            == {502: "upstream_error", 504: "upstream_timeout"}[response.status_code]
        )
        regenerated = http.post(f"/sessions/{sid}/chats/{cid}/regenerate")
        assert regenerated.status_code in (502, 504), regenerated.text

        messages = all_pages(http, f"/sessions/{sid}/chats/{cid}/messages")
        assert [(m["seq"], m["role"], m["content"], m["status"]) for m in messages] == [
            (1, "user", "are you there?", "unanswered")
        ]
        assert ok(http.get(f"/sessions/{sid}/chats/{cid}"))["messageCount"] == 0  # counted once answered
