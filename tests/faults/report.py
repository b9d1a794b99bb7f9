"""The fault tier's figures, as printed at the end of the run and written to RESULTS.md."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from local_stack import dynamodb_local
from tests.faults.recorder import ATTEMPTS

if TYPE_CHECKING:
    from tests.faults.conftest import FaultStack


def _message(body: str) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:100]


def _rows(counts: dict[str, int]) -> list[str]:
    return [f"| {name} | {count:,} |" for name, count in counts.items()]


def render(stack: FaultStack, faults: dict[str, Any], elapsed: float, outcomes: dict[str, list[str]]) -> str:
    """Markdown: what ran, what DynamoDB did to it, what the API answered, what was checked."""
    recorder = stack.recorder
    with recorder.lock:
        calls = list(recorder.calls)
        problems = list(recorder.problems)
        checks = dict(sorted(recorder.checks.items()))
        gave_up = [c for c in recorder.gave_up if c is not None]
    statuses = Counter(f"{c.status} {c.code}" if c.code else str(c.status) for c in calls)
    conflicts = Counter(_message(c.body) for c in calls if (c.status, c.code) == (409, "conflict"))
    by_route = Counter(c.route for c in calls)
    jar = "DynamoDB Local"
    with contextlib.suppress(dynamodb_local.DynamoDBLocalError):
        jar = f"DynamoDB Local ({dynamodb_local.find_jar().parent.name})"
    kinds = {kind: sum(ops.values()) for kind, ops in (faults.get("faults") or {}).items()}
    lines = [
        "# Fault tier: the API against a DynamoDB that fights back",
        "",
        f"Written by the last run of `tests/faults` ({time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"{platform.machine()}, {elapsed:.0f} s with the stack's start-up). The local stack "
        f"(`python -m local_stack`, real handlers in Lambda-like workers) ran against {jar}, with the "
        "fault injector (`local_stack/faults.py`) between the handlers and the table:",
        "",
        f"    DYNAMODB_FAULTS={faults.get('spec', '?')}",
        "",
        f"Tests: {len(outcomes.get('passed', []))} passed, {len(outcomes.get('failed', []))} failed"
        + (f", {len(outcomes['error'])} errors" if outcomes.get("error") else "")
        + ".",
        "",
        "| figure | count |",
        "|---|---:|",
        f"| HTTP calls to the API | {len(calls):,} |",
        f"| DynamoDB requests through the injector | {faults.get('requests', 0):,} |",
        f"| faults injected | {faults.get('faults_total', 0):,} |",
        f"| ClientRequestToken repeats answered as DynamoDB does | {sum((faults.get('tokens') or {}).values()):,} |",
        f"| invariant checks on the stored items | {sum(checks.values()):,} |",
        f"| answers outside the contract | {len(problems):,} |",
        f"| operations still failing after the client's {ATTEMPTS} tries | {len(gave_up):,} |",
        "",
        "Faults injected, by kind:",
        "",
        "| kind | count |",
        "|---|---:|",
        *_rows(kinds),
        "",
        "DynamoDB requests, by operation:",
        "",
        "| operation | requests |",
        "|---|---:|",
        *_rows(faults.get("calls") or {}),
        "",
        "API answers, by status and error code:",
        "",
        "| answer | count |",
        "|---|---:|",
        *_rows(dict(sorted(statuses.items()))),
        "",
        "`409 conflict` answers, by message (each was retried by the client):",
        "",
        "| message | count |",
        "|---|---:|",
        *_rows(dict(conflicts.most_common())),
        "",
        "API calls, by route:",
        "",
        "| route | calls |",
        "|---|---:|",
        *_rows(dict(sorted(by_route.items()))),
        "",
        "Invariant checks (each on the items read straight from DynamoDB Local after a scenario):",
        "",
        "| invariant | checks |",
        "|---|---:|",
        *_rows(checks),
        "",
    ]
    if gave_up:
        lines += [f"Operations the client gave up on after {ATTEMPTS} tries (first 30):", ""]
        lines += [f"- `{c.test}`: {c.status} {c.route}: {c.body[:200]}" for c in gave_up[:30]]
        lines.append("")
    if problems:
        lines += ["Answers outside the contract (first 30):", ""]
        lines += [f"- `{p.call.test}`: {p.describe()}" for p in problems[:30]]
        lines.append("")
    return "\n".join(lines)
