"""Which messages the model sees: the system prompt, then the newest history that fits.

The budget is in estimated tokens. A message is either in the window whole or not at all, the
system prompt and the newest user message are always in, and the window is contiguous (an old
message never appears without the newer ones after it). Counting uses the ``tokens`` stored on
each message at write time, so building the window reads nothing but one bounded query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text, plus the per-message framing."""
    return math.ceil(len(text) / 4) + MESSAGE_OVERHEAD


def build_window(
    system_prompt: str | None, newest_first: Sequence[dict[str, Any]], budget: int
) -> list[dict[str, str]]:
    """``newest_first`` starts with the message being answered; returns chat-completions
    messages, oldest first."""
    if not newest_first:
        raise ValueError("the window needs the message being answered")
    used = estimate_tokens(system_prompt) if system_prompt else 0
    chosen: list[dict[str, Any]] = []
    for i, message in enumerate(newest_first):
        cost = int(message.get("tokens") or estimate_tokens(message["content"]))
        if i > 0 and used + cost > budget:
            break
        used += cost
        chosen.append(message)
    window = [{"role": "system", "content": system_prompt}] if system_prompt else []
    window.extend({"role": m["role"], "content": m["content"]} for m in reversed(chosen))
    return window
