"""Deployed, the model API key comes from SSM Parameter Store through Powertools Parameters."""

from __future__ import annotations

import boto3
import pytest

from tests.support import invoke, reset_caches
from tests.upstream import Upstream


def test_api_key_is_read_from_ssm_and_cached(table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/chat-sessions/openai-api-key", Value="sk-from-ssm", Type="SecureString")
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY_PARAMETER", "/chat-sessions/openai-api-key")
    reset_caches()
    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"]
    assert invoke("send_message", session=sid, chat=chat, body={"content": "hi"}).status == 201
    # Rotating the parameter is not seen until the cache expires: one SSM read per container.
    ssm.put_parameter(Name="/chat-sessions/openai-api-key", Value="sk-rotated", Type="SecureString", Overwrite=True)
    assert invoke("send_message", session=sid, chat=chat, body={"content": "again"}).status == 201
    assert model.authorizations == ["Bearer sk-from-ssm", "Bearer sk-from-ssm"]
