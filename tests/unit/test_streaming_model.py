"""The local model's streaming (``stream=True``, a word a chunk, ``LOCAL_MODEL_DELAY_MS``) and
the service's streaming client (``llm.OpenAIChatModel.stream``) against it: the pieces put
together are the reply, the usage comes in the last chunk, and a stream that breaks off midway
is a failure, with what came before it kept."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chat_sessions.config import get_settings
from chat_sessions.errors import UpstreamError
from chat_sessions.llm import OpenAIChatModel, build_openai_client
from local_stack import model_server
from tests.support import reset_caches


@pytest.fixture(scope="module")
def local_model() -> Iterator[str]:
    server, url = model_server.start_in_thread()
    yield url
    server.shutdown()


def _model(url: str, monkeypatch: pytest.MonkeyPatch) -> OpenAIChatModel:
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    reset_caches()
    return OpenAIChatModel(build_openai_client(get_settings()), None, max_reply_bytes=4096)


def test_a_streamed_reply_is_the_whole_reply_word_by_word(local_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_MODEL_DELAY_MS", "30")
    messages = [{"role": "user", "content": "tell me about streams"}]
    stream = _model(local_model, monkeypatch).stream(model_server.MODEL_ID, messages, 30)
    started = time.monotonic()
    pieces = list(stream)
    elapsed = time.monotonic() - started
    whole = model_server.reply_for(messages)
    assert "".join(pieces) == whole and len(pieces) == len(whole.split())
    assert elapsed >= 0.03 * (len(pieces) - 1)  # the delay between words was kept
    completion = stream.completion()
    assert completion.content == whole
    assert completion.completion_tokens > 0 and completion.prompt_tokens > 0  # usage from the last chunk


def test_a_broken_stream_fails_with_what_came_kept(local_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_MODEL_DELAY_MS", "0")
    stream = _model(local_model, monkeypatch).stream(
        model_server.MODEL_ID, [{"role": "user", "content": "go [fail after 4 words] on"}], 30
    )
    pieces: list[str] = []
    with pytest.raises(UpstreamError):
        for piece in stream:
            pieces.append(piece)
    assert len(pieces) == 4
    assert stream.completion().content == "".join(pieces) == "[local model] You said:"
