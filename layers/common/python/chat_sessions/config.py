"""Environment, parsed once per cold start into one typed object.

A bad value fails the cold start loudly instead of surfacing later as a 500 on some request.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    table_name: str = Field(min_length=3)
    max_active_sessions: int = Field(ge=1)
    context_token_budget: int = Field(ge=256)
    context_max_messages: int = Field(ge=1, le=500)
    default_model: str = Field(min_length=1)
    openai_base_url: str | None
    openai_api_key: str | None
    openai_api_key_parameter: str | None
    model_timeout_seconds: float = Field(gt=0)
    model_max_retries: int = Field(ge=0, le=5)
    max_completion_tokens: int | None
    dynamodb_endpoint: str | None
    idempotency_ttl_seconds: int = Field(ge=60)
    max_body_bytes: int = Field(ge=1024)


def _opt(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ.get
    max_tokens = _opt("MAX_COMPLETION_TOKENS")
    return Settings(
        table_name=env("TABLE_NAME", "chat-sessions"),
        max_active_sessions=int(env("MAX_ACTIVE_SESSIONS", "10")),
        context_token_budget=int(env("CONTEXT_TOKEN_BUDGET", "8000")),
        context_max_messages=int(env("CONTEXT_MAX_MESSAGES", "100")),
        default_model=env("OPENAI_MODEL", "gpt-4o-mini"),
        openai_base_url=_opt("OPENAI_BASE_URL"),
        openai_api_key=_opt("OPENAI_API_KEY"),
        openai_api_key_parameter=_opt("OPENAI_API_KEY_PARAMETER"),
        model_timeout_seconds=float(env("MODEL_TIMEOUT_SECONDS", "25")),
        model_max_retries=int(env("MODEL_MAX_RETRIES", "0")),
        max_completion_tokens=int(max_tokens) if max_tokens else None,
        dynamodb_endpoint=_opt("DYNAMODB_ENDPOINT"),
        idempotency_ttl_seconds=int(env("IDEMPOTENCY_TTL_SECONDS", "86400")),
        max_body_bytes=int(env("MAX_BODY_BYTES", "262144")),
    )
