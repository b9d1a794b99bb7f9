"""The user's counters and token periods: names and arithmetic, no DynamoDB.

One item per user (``keys.quota_key``) holds every counter ``GET /me/usage`` reports: sessions
by status (``activeSessions`` is also the quota's counter), chats, messages and all-time token
usage, and the current period's token usage under attribute names that carry the period
(``totalTokens@2026-11``). Each counter is moved in the transaction that changes what it counts,
so it is exact whatever runs concurrently; a reply's update also removes the previous period's
attributes, so the item stays small.

A period is a calendar month in UTC, ``YYYY-MM``; ``MONTHLY_TOKEN_BUDGET`` applies to it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chat_sessions.errors import TokenBudgetExhausted

STATUS_COUNTERS = {"active": "activeSessions", "paused": "pausedSessions", "archived": "archivedSessions"}
"""The counter of each session status."""
COUNTERS = (*STATUS_COUNTERS.values(), "chats", "messages", "promptTokens", "completionTokens", "totalTokens")
TOKEN_FIELDS = ("promptTokens", "completionTokens", "totalTokens")


def period_of(timestamp: str) -> str:
    """The period (``YYYY-MM``) of an ISO 8601 UTC timestamp as :func:`clock.utc_now` writes it."""
    return timestamp[:7]


def previous_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def period_field(field: str, period: str) -> str:
    """The attribute holding ``field`` (one of :data:`TOKEN_FIELDS`) for ``period``."""
    return f"{field}@{period}"


def seconds_to_next_period(now: datetime) -> int:
    """Whole seconds until the next period begins (at least 1)."""
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, int((nxt - now).total_seconds() + 0.999))


def budget_exhausted(budget: int) -> TokenBudgetExhausted:
    retry = seconds_to_next_period(datetime.now(UTC))
    return TokenBudgetExhausted(
        f"This month's token budget ({budget} tokens) is used up; it renews at the start of next month (UTC).",
        headers={"Retry-After": str(retry)},
    )
