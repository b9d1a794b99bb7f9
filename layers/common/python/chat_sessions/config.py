"""Environment, parsed once per cold start into one typed object.

A bad value fails the cold start loudly instead of surfacing later as a 500 on some request.
"""

import os
from functools import lru_cache

from pydantic import BaseModel, Field

DEFAULT_MAX_BODY_BYTES = 512 * 1024
"""Every valid request fits, whatever characters it holds. The largest is a chat with a
200-character name, a 128-character model and a 32,000-character system prompt. A JSON encoder
that escapes non-ASCII (Python's default, and most clients') writes a character outside the
Basic Multilingual Plane as a surrogate pair, ``\\ud83d\\ude00``: 12 bytes for one character
of the limits. So 12 x 32,200 + 128 + the syntax = 386,600 bytes, pretty-printed or not
(``tests/unit/test_input_limits.py`` builds these bodies and sends them). 512 KiB is that with
room for whatever whitespace a client adds, and far under Lambda's 6 MB request payload."""

DEFAULT_MAX_COMPLETION_TOKENS = 8192
"""Sent as ``max_tokens``: the longest reply the model is asked for (about 32 KB of English)."""

DEFAULT_MAX_REPLY_BYTES = 128 * 1024
"""The longest reply stored, in UTF-8 bytes; a longer one answers 502. DynamoDB's item limit is
400 KB: a reply item holds its content plus at most ~1.5 KB of keys, ids and counters (measured
with a 256-character user id of ``#``, the longest key there is), so 128 KiB leaves the item at
a third of the limit. It is 16 bytes for each token of ``DEFAULT_MAX_COMPLETION_TOKENS``, four
times what English text takes and more than any tokenizer's usual worst case, so a model that
honours ``max_tokens`` is not refused."""

LOCAL_CURSOR_KEY = "local-cursor-signing-key"
"""The cursor signing key when no secret is configured (the local stack and tests). Deployed,
the template sets ``CURSOR_KEY_SECRET`` to a Secrets Manager secret it generates."""


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
    max_completion_tokens: int | None = Field(ge=1)
    dynamodb_endpoint: str | None
    idempotency_ttl_seconds: int = Field(ge=60)
    max_body_bytes: int = Field(ge=1024)
    max_reply_bytes: int = Field(ge=1024, le=300 * 1024)
    monthly_token_budget: int = Field(ge=0)
    """Tokens a user may use per calendar month (UTC); 0: no budget."""
    retention_days: float = Field(ge=0, le=36500)
    """Days without a write after which a session that is not archived is removed; 0: kept."""
    archived_retention_days: float = Field(ge=0, le=36500)
    """The same for archived sessions; 0: kept."""
    cursor_key_secret: str | None
    cursor_signing_key: str = Field(min_length=16)
    generation_timeout_seconds: float = Field(gt=0, le=900)
    """The generating function's timeout (``GENERATION_TIMEOUT_SECONDS``, the template's
    ``GenerationTimeoutSeconds``): how long a reply generated on its own may take."""
    reply_lease_margin_seconds: float = Field(ge=0)
    """Added to that timeout for the chat's lease: a generation that died unlocks its chat (and
    shows ``failed``) at most timeout + margin after it started."""

    reply_flush_seconds: float = Field(ge=0, le=2)
    """A generating reply's content is stored when this long has passed since its last write
    (``REPLY_FLUSH_SECONDS``, default 1.5): at least every 2 s while text comes."""

    @property
    def reply_lease_seconds(self) -> float:
        return self.generation_timeout_seconds + self.reply_lease_margin_seconds


def _opt(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ.get
    # "0" sends no max_tokens, for servers that refuse the parameter; replies stay bounded by
    # MAX_REPLY_BYTES either way.
    max_tokens = int(env("MAX_COMPLETION_TOKENS", "").strip() or DEFAULT_MAX_COMPLETION_TOKENS)
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
        max_completion_tokens=max_tokens or None,
        dynamodb_endpoint=_opt("DYNAMODB_ENDPOINT"),
        idempotency_ttl_seconds=int(env("IDEMPOTENCY_TTL_SECONDS", "86400")),
        max_body_bytes=int(env("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
        max_reply_bytes=int(env("MAX_REPLY_BYTES", str(DEFAULT_MAX_REPLY_BYTES))),
        monthly_token_budget=int(env("MONTHLY_TOKEN_BUDGET", "").strip() or 0),
        retention_days=float(env("RETENTION_DAYS", "").strip() or 0),
        archived_retention_days=float(env("ARCHIVED_RETENTION_DAYS", "").strip() or 0),
        cursor_key_secret=_opt("CURSOR_KEY_SECRET"),
        cursor_signing_key=_opt("CURSOR_SIGNING_KEY") or LOCAL_CURSOR_KEY,
        generation_timeout_seconds=float(env("GENERATION_TIMEOUT_SECONDS", "").strip() or 300),
        reply_lease_margin_seconds=float(env("REPLY_LEASE_MARGIN_SECONDS", "").strip() or 30),
        reply_flush_seconds=float(env("REPLY_FLUSH_SECONDS", "").strip() or 1.5),
    )
