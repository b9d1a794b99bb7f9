"""examples/ keeps working: the usage story, run as a user would run it, against the stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

from local_stack.template import ROOT
from tests.integration.conftest import _token_for, client, new_user, ok

# Only the HTTP API and one user: `make e2e` runs it against any base URL too.
pytestmark = pytest.mark.e2e


def test_the_story_example_runs_and_cleans_up(stack: str) -> None:
    user = new_user("story")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "story.py"), "--url", stack, "--token", _token_for(user)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "'Feature Development' created and took over, active: True" in lines[4]
    assert lines[5].startswith("switched back to 'Debug Session'")
    assert lines[-2] == "'Debug Session' holds 4 messages; 'Feature Development' none"
    sid = lines[0].split()[1]
    with client(stack, user) as http:
        assert http.get(f"/sessions/{sid}").status_code == 404  # deleted at the end
        assert sid not in {s["sessionId"] for s in ok(http.get("/sessions"))["items"]}
