"""The model, behind a small interface, reached through the official ``openai`` client.

Only the functions that call the model import this module (``openai`` costs cold-start time).
Any OpenAI-compatible server works: ``OPENAI_BASE_URL`` points the client at it. Deployed, the
API key is read from SSM Parameter Store (``OPENAI_API_KEY_PARAMETER``) through Powertools
Parameters and cached across invocations; it never sits in code, events or plain environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, cast

import openai

from chat_sessions.config import Settings, get_settings
from chat_sessions.errors import RateLimited, UpstreamError, UpstreamTimeout
from chat_sessions.observability import logger

API_KEY_CACHE_SECONDS = 300


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


class OpenAIChatModel:
    """Chat completions through ``openai.OpenAI``; upstream failures become service errors."""

    def __init__(self, client: openai.OpenAI, max_completion_tokens: int | None = None) -> None:
        self._client = client
        self._max_tokens = max_completion_tokens

    def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        extra: dict[str, Any] = {}
        if self._max_tokens:
            extra["max_tokens"] = self._max_tokens
        try:
            response = self._client.chat.completions.create(
                model=model,
                messages=cast(Any, messages),
                **extra,
            )
        except openai.APITimeoutError as exc:
            raise UpstreamTimeout("The model did not answer in time; the message is kept as unanswered.") from exc
        except openai.RateLimitError as exc:
            retry_after = exc.response.headers.get("retry-after")
            raise RateLimited(
                "The model is rate limited; the message is kept as unanswered.",
                headers={"Retry-After": retry_after} if retry_after else None,
            ) from exc
        except (openai.APIError, openai.OpenAIError) as exc:
            logger.warning("model call failed", extra={"error": type(exc).__name__})
            raise UpstreamError("The model failed to answer; the message is kept as unanswered.") from exc
        if not response.choices or response.choices[0].message.content is None:
            raise UpstreamError("The model returned no text; the message is kept as unanswered.")
        usage = response.usage
        return Completion(
            content=response.choices[0].message.content,
            model=response.model or model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )


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
    """Timeout and retries are bounded so that ``timeout * (retries + 1)`` plus backoff stays
    under the Lambda timeout (checked by a test against ``template.yaml``)."""
    return openai.OpenAI(
        api_key=_api_key(settings),
        base_url=settings.openai_base_url,
        timeout=settings.model_timeout_seconds,
        max_retries=settings.model_max_retries,
        http_client=http_client,
    )


@lru_cache(maxsize=1)
def get_chat_model() -> ChatModel:
    settings = get_settings()
    return OpenAIChatModel(build_openai_client(settings), settings.max_completion_tokens)
