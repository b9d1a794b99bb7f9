"""``LOCAL_DATA_DIR``: the local stack keeps its tables across restarts (DynamoDB Local's ``-dbPath``)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import client, local_stack, new_user, ok


def test_data_survives_a_restart_with_local_data_dir(tmp_path: Path) -> None:
    user = new_user()
    data = tmp_path / "data"
    with local_stack(LOCAL_DATA_DIR=str(data), LOCAL_DYNAMODB="dynamodb-local") as url, client(url, user) as http:
        sid = ok(http.post("/sessions", json={"name": "kept"}), 201)["sessionId"]
        ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)
        sent = ok(http.post(f"/sessions/{sid}/messages", json={"content": "remember me"}), 201)
    assert any(data.iterdir())  # the tables are in the directory, not in memory
    with local_stack(LOCAL_DATA_DIR=str(data), LOCAL_DYNAMODB="dynamodb-local") as url, client(url, user) as http:
        session = ok(http.get(f"/sessions/{sid}"))
        chat_id = session["activeChatId"]
        messages = ok(http.get(f"/sessions/{sid}/chats/{chat_id}/messages"))["items"]
    assert session["name"] == "kept" and session["messageCount"] == 2
    assert [m["content"] for m in messages] == ["remember me", sent["assistantMessage"]["content"]]
