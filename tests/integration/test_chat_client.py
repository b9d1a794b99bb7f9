"""The terminal client (``make chat``) driven through a pipe against the running stack."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.integration.conftest import new_user
from tests.servers import ROOT


def _chat(stack: str, user: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local_stack.chat_client", "--user", user, "--url", stack, *args],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_chat_client_over_a_pipe(stack: str) -> None:
    user = new_user("carol")
    done = _chat(stack, user, "hello from the pipe\n/new Feature\n/chats\n/quit\nnever sent\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"as {user}" in out
    assert "assistant: [local model] You said: 'hello from the pipe'." in out
    assert "chat 'Feature' created" in out
    lines = out.splitlines()
    assert any(line.startswith("  1. Chat 1 (") and "2 messages" in line for line in lines), out
    assert any(line.startswith("* 2. Feature (") and "0 messages" in line for line in lines), out
    assert "never sent" not in out.split("> /quit", 1)[1]
    assert out.rstrip().endswith("bye")


def test_chat_client_rejoins_a_session_and_switches_back(stack: str) -> None:
    user = new_user("dave")
    first = _chat(stack, user, "one\n/new Second\ntwo\n")
    opened = re.search(r"^session '.*' \((\w+)\) as ", first.stdout, re.MULTILINE)
    assert opened is not None, first.stdout
    session_id = opened.group(1)
    done = _chat(stack, user, "/switch 1\nthree\n/history\n/sessions\n/bogus\n", "--session", session_id)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "active chat: Chat 1" in out
    history = [line.strip() for line in out.split("> /history", 1)[1].split("> /sessions", 1)[0].splitlines()]
    assert [line.split(":", 1)[0] for line in history if line] == ["1 user", "2 assistant", "3 user", "4 assistant"]
    assert f"* terminal ({user}) ({session_id}, active, 2 chats)" in out
    assert "unknown or incomplete command '/bogus'" in out


def test_chat_client_forks_and_edits_by_seq(stack: str) -> None:
    user = new_user("erin")
    done = _chat(stack, user, "one\ntwo\n/fork 2 Alt\nthree\n/history\n/edit 3 THREE\n/history\n/chats\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "chat 'Alt' (" in out and "forked after message 2; it is now active" in out
    after_fork, after_edit = out.split("> /history")[1:3]
    lines = [line.strip() for line in after_fork.split("> /edit", 1)[0].splitlines() if line.strip()]
    assert [line.split(":", 1)[0] for line in lines] == ["1 user", "2 assistant", "3 user", "4 assistant"]
    assert "3 user: three" in lines and "1 user: one" in lines
    assert "forked with your edit; it is now active" in out
    assert "assistant: [local model] You said: 'THREE'." in out
    edited = [line.strip() for line in after_edit.split("> /chats", 1)[0].splitlines() if line.strip()]
    assert [line.split(":", 1)[0] for line in edited] == ["1 user", "2 assistant", "3 user", "4 assistant"]
    assert "3 user: THREE" in edited
    assert any(line.startswith("* 3. Alt (fork) (") for line in out.splitlines()), out
