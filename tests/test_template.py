"""template.yaml checks: routes, one events/ payload and one test per function, IAM, timeouts."""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local_stack.template import ROOT, functions, load, routes

CONTRACT_ROUTES = {
    ("POST", "/sessions"),
    ("GET", "/sessions"),
    ("GET", "/sessions/{sessionId}"),
    ("PATCH", "/sessions/{sessionId}"),
    ("POST", "/sessions/{sessionId}/pause"),
    ("POST", "/sessions/{sessionId}/resume"),
    ("DELETE", "/sessions/{sessionId}"),
    ("POST", "/sessions/{sessionId}/chats"),
    ("GET", "/sessions/{sessionId}/chats"),
    ("GET", "/sessions/{sessionId}/chats/{chatId}"),
    ("PATCH", "/sessions/{sessionId}/chats/{chatId}"),
    ("POST", "/sessions/{sessionId}/chats/{chatId}/activate"),
    ("DELETE", "/sessions/{sessionId}/chats/{chatId}"),
    ("POST", "/sessions/{sessionId}/chats/{chatId}/messages"),
    ("POST", "/sessions/{sessionId}/messages"),
    ("POST", "/sessions/{sessionId}/chats/{chatId}/regenerate"),
    ("GET", "/sessions/{sessionId}/chats/{chatId}/messages"),
}
MODEL_FUNCTIONS = {"send_message", "send_to_active_chat", "regenerate"}
READ_ONLY = {"dynamodb:GetItem", "dynamodb:Query"}
TEMPLATE = load()


def statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Inline policy statements (SAM policy templates such as SQSSendMessagePolicy skipped)."""
    out: list[dict[str, Any]] = []
    for policy in resource["Properties"].get("Policies", []):
        out += policy.get("Statement", [])
    return out


def test_every_contract_route_has_exactly_one_function() -> None:
    found = [(r.method, r.path) for r in routes(TEMPLATE)]
    assert sorted(found) == sorted(CONTRACT_ROUTES)
    modules = [r.module for r in routes(TEMPLATE)]
    assert len(set(modules)) == len(modules), "handler module names must be unique"


@functools.cache
def called_handlers() -> frozenset[str]:
    """Handler modules some test module other than this one calls, found in the code
    (``invoke("<module>", ...)`` or ``<module>.lambda_handler(...)``): a module name that is
    only mentioned (in a string, a list of names, or this file) is not a test."""
    called: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        if path.resolve() == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "invoke" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    called.add(first.value)
            elif isinstance(func, ast.Attribute) and func.attr == "lambda_handler" and isinstance(func.value, ast.Name):
                called.add(func.value.id)
    return frozenset(called)


@pytest.mark.parametrize("route", routes(TEMPLATE), ids=lambda r: r.module)
def test_each_function_has_a_handler_an_event_and_a_test(route: Any) -> None:
    """A function "has a test" when another test module calls its handler, found in the code
    (``invoke("<module>", ...)`` or ``<module>.lambda_handler(...)``): a module name that is
    only mentioned (in a string, a list of names, or this file) is not a test."""
    assert (route.code_dir / f"{route.module}.py").is_file()
    event = json.loads((ROOT / "events" / f"{route.module}.json").read_text())
    assert event["version"] == "2.0"
    assert event["routeKey"] == f"{route.method} {route.path}"
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    called = called_handlers()
    assert route.module in called, f"no test calls the {route.module} handler"


def test_events_hold_no_secret() -> None:
    for path in (ROOT / "events").glob("*.json"):
        text = path.read_text()
        assert "sk-" not in text and "eyJ" not in text, path


def test_every_function_has_an_event_file_and_a_test() -> None:
    """Every function, the stream consumer included, has an event and a test that calls it."""
    called = called_handlers()
    for resource in functions(TEMPLATE).values():
        module = resource["Properties"]["Handler"].split(".")[0]
        assert (ROOT / "events" / f"{module}.json").is_file(), module
        assert module in called, f"no test calls the {module} handler"


def test_stream_consumer_only_purges() -> None:
    purge = functions(TEMPLATE)["PurgeDeletedFunction"]
    actions = {a for s in statements(purge) if "Action" in s for a in s["Action"]}
    assert actions == {"dynamodb:Query", "dynamodb:BatchWriteItem"}
    (event,) = purge["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert '"eventName": ["REMOVE"]' in event["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"]


def test_read_only_functions_get_read_only_access() -> None:
    for name, resource in functions(TEMPLATE).items():
        (event,) = resource["Properties"]["Events"].values()
        if event["Type"] != "HttpApi":
            continue
        method = event["Properties"]["Method"]
        actions = {a for s in statements(resource) for a in s["Action"] if a.startswith("dynamodb:")}
        assert actions, name
        if method == "GET":
            assert actions <= READ_ONLY, (name, actions)
        assert "dynamodb:Scan" not in actions and "dynamodb:*" not in actions
        for statement in statements(resource):
            assert statement["Resource"] != "*", name


def test_only_model_functions_read_the_key_parameter() -> None:
    for name, resource in functions(TEMPLATE).items():
        module = resource["Properties"]["Handler"].split(".")[0]
        reads_ssm = any("ssm:GetParameter" in str(s["Action"]) for s in statements(resource))
        assert reads_ssm == (module in MODEL_FUNCTIONS), name
        env = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert "OPENAI_API_KEY" not in env


def test_model_client_answers_before_the_lambda_timeout() -> None:
    for resource in functions(TEMPLATE).values():
        props = resource["Properties"]
        if props["Handler"].split(".")[0] not in MODEL_FUNCTIONS:
            continue
        env = props["Environment"]["Variables"]
        timeout, retries = float(env["MODEL_TIMEOUT_SECONDS"]), int(env["MODEL_MAX_RETRIES"])
        # Every attempt may take the full timeout; openai's backoff is at most 8 s a retry;
        # two seconds are left for DynamoDB.
        worst = timeout * (retries + 1) + 8 * retries + 2
        assert worst < props["Timeout"] <= 29, (worst, props["Timeout"])


def test_table_and_globals() -> None:
    (table,) = [r for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["PK", "SK"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    glob = TEMPLATE["Globals"]["Function"]
    assert glob["Architectures"] == ["arm64"] and glob["Runtime"].startswith("python3.")
    assert "POWERTOOLS_SERVICE_NAME" in glob["Environment"]["Variables"]
    api = TEMPLATE["Resources"]["HttpApi"]["Properties"]["Auth"]
    jwt = api["Authorizers"][api["DefaultAuthorizer"]]["JwtConfiguration"]
    assert jwt == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}


def test_no_module_but_keys_writes_key_strings() -> None:
    package = ROOT / "layers" / "common" / "python" / "chat_sessions"
    offenders = []
    for path in [*package.rglob("*.py"), *(ROOT / "functions").glob("*.py")]:
        if path.name == "keys.py":
            continue
        if re.search(r"[\"'](USER|SESSION|CHAT|MSG)#", path.read_text()):
            offenders.append(path.name)
    assert offenders == []


def test_no_module_but_store_imports_boto3() -> None:
    package = ROOT / "layers" / "common" / "python" / "chat_sessions"
    importers = sorted(
        str(p.relative_to(ROOT))
        for p in [*package.rglob("*.py"), *(ROOT / "functions").glob("*.py")]
        if re.search(r"^\s*(import boto3|from boto3)", p.read_text(), re.M)
    )
    assert importers == ["layers/common/python/chat_sessions/store/__init__.py"]


def test_cfn_lint_is_clean() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(ROOT / "template.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
