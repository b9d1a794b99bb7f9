"""The published document is true: Schemathesis, run as an API consumer would, finds nothing.

The integration tests' shared stack (its users are its own, so it sees no other test's data;
a stack of its own cost about 7 CPU-s more) and the committed ``openapi.json``: every operation
in it is tested, new routes included, with every check and every phase, the fixed seed and
example counts of ``tests/schemathesis.toml``. The same configuration runs against any stack
with ``make schemathesis API_URL=... TOKEN=...``. What the run leaves out, and why, is in the
README ("The published API document, checked").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from local_stack.token import make_token
from tests.integration.conftest import new_user
from tests.schemathesis_hooks import write_auth_file
from tests.servers import ROOT

CONFIG = ROOT / "tests" / "schemathesis.toml"
DOCUMENT = ROOT / "openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
LEFT_OUT = {"DELETE /me"}
"""Operations tests/schemathesis.toml leaves out (it says why); every other one is run."""


def schemathesis_command(url: str) -> list[str]:
    """What ``make schemathesis`` runs too (the users come from ``SCHEMATHESIS_AUTH_FILE``)."""
    return [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file",
        str(CONFIG),
        "run",
        str(DOCUMENT),
        "--url",
        url,
    ]


def test_schemathesis_finds_nothing_in_the_published_document(stack: str, tmp_path: Path) -> None:
    document = json.loads(DOCUMENT.read_text())
    operations = sum(1 for item in document["paths"].values() for method in item if method in METHODS)
    selected = operations - len(LEFT_OUT)
    auth_file = tmp_path / "auth.json"
    write_auth_file(auth_file, make_token(new_user("schemathesis")), make_token(new_user("schemathesis-other")))
    run = subprocess.run(
        schemathesis_command(stack),
        cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_AUTH_FILE": str(auth_file), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,  # no timeout of its own: pytest-timeout's (pyproject.toml) ends a hung run
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    # The last line: "No issues found in 40s", or only warnings (such as "Missing test data": an
    # operation whose generated ids mostly name nothing); never a failure or an error.
    assert re.search(r"=+ (No issues found|\d+ warnings?) in [\d.]+s =+\s*$", report), report[-5_000:]
    assert f"Selected: {selected}/{operations}" in report, report[-5_000:]
    assert f"Tested: {selected}" in report, report[-5_000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", report), f"phase {phase} did not pass:\n{report[-5_000:]}"
