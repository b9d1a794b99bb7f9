"""The context window: system prompt kept, newest message kept, whole messages only."""

from __future__ import annotations

from typing import Any

import pytest

from chat_sessions.context_window import build_window, estimate_tokens


def history(n: int, size: int = 400) -> list[dict[str, Any]]:
    """n messages, newest first, alternating roles, each ``size`` characters."""
    out = []
    for seq in range(n, 0, -1):
        content = f"{seq:05d}" + "x" * (size - 5)
        out.append(
            {
                "seq": seq,
                "role": "user" if seq % 2 else "assistant",
                "content": content,
                "tokens": estimate_tokens(content),
            }
        )
    return out


def test_system_prompt_first_and_newest_last() -> None:
    window = build_window("be brief", history(5), budget=10_000)
    assert window[0] == {"role": "system", "content": "be brief"}
    assert [m["content"][:5] for m in window[1:]] == ["00001", "00002", "00003", "00004", "00005"]


def test_trimmed_at_the_budget_without_cutting_messages() -> None:
    per_message = estimate_tokens("x" * 400)
    system = "s" * 40
    budget = estimate_tokens(system) + 3 * per_message + per_message // 2
    window = build_window(system, history(50), budget)
    assert len(window) == 1 + 3
    assert [m["content"][:5] for m in window[1:]] == ["00048", "00049", "00050"]
    assert all(len(m["content"]) == 400 for m in window[1:])


def test_newest_message_is_sent_even_over_budget() -> None:
    big = history(3, size=20_000)
    window = build_window("sys", big, budget=256)
    assert [m["role"] for m in window] == ["system", "user"]
    assert window[-1]["content"].startswith("00003")


def test_window_size_does_not_depend_on_chat_length() -> None:
    short = build_window(None, history(100)[:50], budget=8000)
    long = build_window(None, history(10_000)[:50], budget=8000)
    assert len(short) == len(long)
    assert sum(len(m["content"]) for m in short) == sum(len(m["content"]) for m in long)


def test_needs_the_message_being_answered() -> None:
    with pytest.raises(ValueError):
        build_window("sys", [], budget=1000)
