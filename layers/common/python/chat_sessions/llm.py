"""The model, behind a small interface, reached through the official ``openai`` client.

Only the functions that call the model import this module (``openai`` costs cold-start time).
Any OpenAI-compatible server works: ``OPENAI_BASE_URL`` points the client at it. Deployed, the
API key is read from SSM Parameter Store (``OPENAI_API_KEY_PARAMETER``) through Powertools
Parameters and cached across invocations; it never sits in code, events or plain environment.

What the model sends back is untrusted input, like a request body: the SDK builds its response
objects without validating them, so a reply with ``"model": 123`` or ``"content": ["a"]`` would
reach the table and break every later read of the chat. The body is therefore read here, at
most ``max_reply_bytes`` of content, and validated completely (strict types, non-negative
bounded usage) before a :class:`Completion` exists; anything else is ``502 upstream_error``.

The whole call has one deadline: ``MODEL_TIMEOUT_SECONDS``, shortened to what the Lambda
invocation has left minus the time needed to store the reply. httpx's timeouts are per read, so
a server sending a byte every few seconds would never trip them; instead every socket wait
(connect, TLS, each write and read) is capped at the time left (:class:`_DeadlineBackend`), and
past the deadline the call fails as a timeout: ``504 upstream_timeout``.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Protocol

import httpcore2
import httpx2
import openai
from pydantic import BaseModel, ConfigDict, Field

from chat_sessions import invocation
from chat_sessions.config import Settings, get_settings
from chat_sessions.errors import RateLimited, UpstreamError, UpstreamTimeout
from chat_sessions.observability import logger

_jitter = random.SystemRandom()  # os.urandom: SnapStart-restored environments do not back off in step
API_KEY_CACHE_SECONDS = 300
MAX_USAGE_TOKENS = 100_000_000
"""Usage counts above this are not a real reply (no model reads or writes 10^8 tokens in one
call); they would also grow the chat's and session's totals without bound."""
STORE_MARGIN_SECONDS = 3.0
"""Kept back from the invocation's remaining time: storing the reply (one transaction, the
SDK's retries included) and answering."""
JSON_ESCAPE_FACTOR = 6
"""A byte of content takes at most six bytes of JSON (``\\u0001``): the raw body read is bounded
by the content cap times this, plus the envelope."""
ENVELOPE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatModel(Protocol):
    def complete(self, model: str, messages: list[dict[str, str]]) -> Completion: ...


class ReplyStream(Protocol):
    """A reply as it is generated: iterating yields its text piece by piece (raising
    :class:`UpstreamError`/:class:`UpstreamTimeout` when the model fails midway); once iteration
    ended, :meth:`completion` is the whole reply with its usage. :meth:`close` stops it early
    (a cancelled reply), closing the connection to the model."""

    def __iter__(self) -> Iterator[str]: ...

    def completion(self) -> Completion: ...

    def close(self) -> None: ...


class StreamingModel(Protocol):
    def stream(self, model: str, messages: list[dict[str, str]], seconds: float) -> ReplyStream: ...


# --- the reply, validated --------------------------------------------------------------------

TokenCount = Annotated[int, Field(ge=0, le=MAX_USAGE_TOKENS)]


class _Reply(BaseModel):
    # Strict: 3.0, "3" and true are not token counts, 123 is not a model name. Unknown fields
    # (ids, logprobs, tool calls, provider extras) are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Usage(_Reply):
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    total_tokens: TokenCount | None = None


class _Message(_Reply):
    content: str | None = None


class _Choice(_Reply):
    message: _Message


class _ChatCompletion(_Reply):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    choices: Annotated[list[_Choice], Field(min_length=1)]
    usage: _Usage | None = None


def parse_reply(body: bytes, requested_model: str, max_reply_bytes: int) -> Completion:
    """A :class:`Completion` from a chat-completions body, or :class:`UpstreamError`.

    Missing optional parts take defaults: no ``usage`` counts zero tokens, no ``model`` is the
    model that was asked for. The total is always prompt + completion (a server's own total is
    checked for type only)."""
    try:
        reply = _ChatCompletion.model_validate_json(body)
    except (ValueError, RecursionError) as exc:  # pydantic's ValidationError is a ValueError
        logger.warning("unreadable model reply", extra={"error": str(exc)[:500], "bytes": len(body)})
        raise UpstreamError("The model's reply could not be read; the message is kept as unanswered.") from exc
    content = reply.choices[0].message.content
    if content is None:
        raise UpstreamError("The model returned no text; the message is kept as unanswered.")
    if len(content.encode()) > max_reply_bytes:
        raise UpstreamError(
            f"The model's reply is too long to store (over {max_reply_bytes} bytes); the message is kept as unanswered."
        )
    usage = reply.usage or _Usage()
    return Completion(
        content=content,
        model=reply.model or requested_model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


# --- one deadline for the whole call ------------------------------------------------------------

_deadline: ContextVar[float | None] = ContextVar("model_call_deadline", default=None)


@contextmanager
def _until(deadline: float) -> Iterator[None]:
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _capped(timeout: float | None, kind: type[Exception]) -> float | None:
    """``timeout`` shortened to the current call's deadline; ``kind`` raised once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise kind("The model call's deadline has passed.")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose every wait ends at the deadline of the call using it. A pooled
    connection serves later calls too; each read looks up the deadline of the call at hand."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        inner = self._inner.start_tls(ssl_context, server_hostname, _capped(timeout, httpcore2.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _capped(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        timeout = _capped(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (the CA bundle, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
    honoured), made once per process: loading the CA bundle is about 30 ms of CPU, which each
    new transport paid again. Lambda builds the model client once per execution environment
    anyway; the tests rebuild it for every test that resets the caches (about 250 in
    ``tests/unit``, 7.7 s of its 125). One context serves any number of connections."""
    return httpx2.create_ssl_context()


def deadline_transport() -> httpx2.HTTPTransport:
    """httpx's own transport with its connections wrapped by :class:`_DeadlineBackend`.

    httpx has no public hook for the network backend of its pool; the pool keeps it in
    ``_network_backend`` and hands it to each new connection. If a release moves it, this fails
    at cold start rather than silently losing the deadline (and the trickling-upstream tests
    in ``tests/unit/test_model_replies.py`` fail too)."""
    transport = httpx2.HTTPTransport(verify=tls_context())
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore2.NetworkBackend):
        raise RuntimeError("httpx's connection pool no longer exposes its network backend")
    pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return transport


# --- the client ---------------------------------------------------------------------------------


def _untransformed(messages: list[dict[str, str]]) -> dict[str, Any]:
    """The window as the request's ``messages``, past the SDK's parameter transform: it walks
    every message against the ``TypedDict`` annotations to rename and reformat fields, which
    plain role/content strings never need, and it cost 35 ms of CPU for a full window of 100
    messages (1 ms for 3), a model call's own time in a Lambda's fraction of a CPU. ``extra_body``
    is merged over the transformed body, so ``messages`` is sent as given."""
    return {"messages": messages}


class OpenAIChatModel:
    """Chat completions through ``openai.OpenAI``; upstream failures become service errors."""

    def __init__(
        self,
        client: openai.OpenAI,
        max_completion_tokens: int | None = None,
        *,
        timeout_seconds: float = 25.0,
        max_retries: int = 0,
        max_reply_bytes: int = 128 * 1024,
    ) -> None:
        self._client = client
        self._max_tokens = max_completion_tokens
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._max_reply_bytes = max_reply_bytes

    def _time_for_the_call(self) -> float:
        left = invocation.seconds_left()
        if left is None:
            return self._timeout
        return min(self._timeout, left - STORE_MARGIN_SECONDS)

    def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        budget = self._time_for_the_call()
        if budget <= 0:
            raise UpstreamTimeout("No time was left to ask the model; the message is kept as unanswered.")
        deadline = time.monotonic() + budget
        with _until(deadline):
            for attempt in range(self._max_retries + 1):
                try:
                    return self._once(model, messages)
                except UpstreamError as exc:
                    # Retries (MODEL_MAX_RETRIES, 0 by default) only for failures that did not
                    # come from the reply itself, and only while the deadline leaves room.
                    pause = min(8.0, 0.5 * 2**attempt) * _jitter.uniform(0.75, 1.0)
                    retryable = isinstance(exc.__cause__, openai.APIConnectionError | openai.InternalServerError)
                    if attempt == self._max_retries or not retryable or deadline - time.monotonic() < pause + 1:
                        raise
                    time.sleep(pause)  # backoff between attempts, inside the deadline
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(self, model: str, messages: list[dict[str, str]], seconds: float) -> ReplyStream:
        """The reply streamed (``stream=True``), within ``seconds`` in all: the generating
        function's own time, not the request's 25 s."""
        return _stream_of(self, model, messages, seconds)

    def _once(self, model: str, messages: list[dict[str, str]]) -> Completion:
        extra: dict[str, Any] = {}
        if self._max_tokens:
            extra["max_tokens"] = self._max_tokens
        limit = self._max_reply_bytes * JSON_ESCAPE_FACTOR + ENVELOPE_BYTES
        try:
            with self._client.chat.completions.with_streaming_response.create(
                model=model, messages=[], extra_body=_untransformed(messages), **extra
            ) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise UpstreamError(
                            f"The model's reply is too long to store (over {limit} bytes of JSON); "
                            "the message is kept as unanswered."
                        )
        except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
            raise UpstreamTimeout("The model did not answer in time; the message is kept as unanswered.") from exc
        except openai.RateLimitError as exc:
            retry_after = exc.response.headers.get("retry-after")
            raise RateLimited(
                "The model is rate limited; the message is kept as unanswered.",
                headers={"Retry-After": retry_after} if retry_after else None,
            ) from exc
        except (openai.OpenAIError, httpx2.HTTPError, httpx2.StreamError) as exc:
            logger.warning("model call failed", extra={"error": type(exc).__name__})
            raise UpstreamError("The model failed to answer; the message is kept as unanswered.") from exc
        return parse_reply(bytes(body), model, self._max_reply_bytes)


class _Chunk(_Reply):
    """One streamed chunk, validated like a whole reply (the SDK builds chunks unvalidated)."""

    model: Annotated[str, Field(max_length=256)] | None = None
    choices: list[_StreamChoice] = []
    usage: _Usage | None = None


class _Delta(_Reply):
    content: str | None = None


class _StreamChoice(_Reply):
    delta: _Delta | None = None
    finish_reason: str | None = None


_Chunk.model_rebuild()


class _OpenAIReplyStream:
    """``chat.completions.create(stream=True)`` with usage asked for in the last chunk; every
    chunk validated, the content bounded by ``max_reply_bytes``, the whole stream by one deadline
    (the connection's waits are capped by it, as for a whole reply)."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        messages: list[dict[str, str]],
        deadline: float,
        options: dict[str, Any],
    ) -> None:
        self._client = client
        self._model = model
        self._messages = messages
        self._deadline = deadline
        self._options = options
        self._max_bytes = int(options.pop("max_reply_bytes"))
        self._parts: list[str] = []
        self._size = 0
        self._served_by: str | None = None
        self._usage = _Usage()
        self._stream: Any = None
        self._finished = False

    def __iter__(self) -> Iterator[str]:
        try:
            with _until(self._deadline):
                self._stream = self._client.chat.completions.create(
                    model=self._model,
                    messages=[],
                    extra_body=_untransformed(self._messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    **self._options,
                )
                for raw in self._stream:
                    piece = self._take(raw)
                    if piece:
                        yield piece
                if not self._finished:  # the connection ended mid-reply, with no error said
                    raise UpstreamError(
                        "The model's stream broke off before the reply ended; what it generated is kept."
                    )
        except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
            raise UpstreamTimeout("The model did not finish in time; what it generated is kept.") from exc
        except openai.RateLimitError as exc:
            raise RateLimited("The model is rate limited; the message is kept as unanswered.") from exc
        except (openai.OpenAIError, httpx2.HTTPError, httpx2.StreamError, httpcore2.TimeoutException) as exc:
            logger.warning("model stream failed", extra={"error": type(exc).__name__})
            raise UpstreamError("The model failed while answering; what it generated is kept.") from exc

    def _take(self, raw: Any) -> str:
        try:
            chunk = _Chunk.model_validate(raw.model_dump() if hasattr(raw, "model_dump") else raw)
        except (ValueError, RecursionError) as exc:
            raise UpstreamError("The model sent an unreadable chunk; what it generated is kept.") from exc
        if chunk.model:
            self._served_by = chunk.model
        if chunk.usage is not None:
            self._usage = chunk.usage
        self._finished = self._finished or any(c.finish_reason for c in chunk.choices)
        piece = "".join(c.delta.content for c in chunk.choices[:1] if c.delta and c.delta.content)
        self._size += len(piece.encode())
        if self._size > self._max_bytes:
            raise UpstreamError(f"The model's reply grew past {self._max_bytes} bytes; what fits is kept.")
        self._parts.append(piece)
        return piece

    def completion(self) -> Completion:
        return Completion(
            content="".join(self._parts),
            model=self._served_by or self._model,
            prompt_tokens=self._usage.prompt_tokens,
            completion_tokens=self._usage.completion_tokens,
        )

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # closing a broken connection: nothing more to lose
                logger.debug("closing the model stream failed", exc_info=True)


def _stream_of(model: OpenAIChatModel, name: str, messages: list[dict[str, str]], seconds: float) -> ReplyStream:
    extra: dict[str, Any] = {"max_reply_bytes": model._max_reply_bytes}
    if model._max_tokens:
        extra["max_tokens"] = model._max_tokens
    return _OpenAIReplyStream(model._client, name, messages, time.monotonic() + seconds, extra)


def _api_key(settings: Settings) -> Any:
    if settings.openai_api_key_parameter:
        from aws_lambda_powertools.utilities import parameters

        name = settings.openai_api_key_parameter

        def from_ssm() -> str:
            return str(parameters.get_parameter(name, decrypt=True, max_age=API_KEY_CACHE_SECONDS))

        return from_ssm
    # Local stacks and OpenAI-compatible servers that need no key still need a non-empty value.
    return settings.openai_api_key or "unused-local-key"


def build_openai_client(settings: Settings, http_client: Any = None) -> openai.OpenAI:
    """The SDK retries nothing (retries are :meth:`OpenAIChatModel.complete`'s, inside the
    deadline); ``timeout`` bounds each wait and the deadline transport the whole call."""
    return openai.OpenAI(
        api_key=_api_key(settings),
        base_url=settings.openai_base_url,
        timeout=settings.model_timeout_seconds,
        max_retries=0,
        http_client=http_client or openai.DefaultHttpxClient(transport=deadline_transport()),
    )


@lru_cache(maxsize=1)
def get_chat_model() -> ChatModel:
    settings = get_settings()
    return OpenAIChatModel(
        build_openai_client(settings),
        settings.max_completion_tokens,
        timeout_seconds=settings.model_timeout_seconds,
        max_retries=settings.model_max_retries,
        max_reply_bytes=settings.max_reply_bytes,
    )
