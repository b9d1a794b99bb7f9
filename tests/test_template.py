"""template.yaml checks: routes, one events/ payload and one test per function, IAM, timeouts."""

from __future__ import annotations

import ast
import functools
import json
import os
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
    ("POST", "/sessions/{sessionId}/archive"),
    ("POST", "/sessions/{sessionId}/unarchive"),
    ("GET", "/me/usage"),
    ("DELETE", "/me"),
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
    ("POST", "/sessions/{sessionId}/chats/{chatId}/fork"),
    ("POST", "/sessions/{sessionId}/chats/{chatId}/messages/{messageId}/edit"),
    ("GET", "/sessions/{sessionId}/chats/{chatId}/messages/{messageId}"),
    ("POST", "/sessions/{sessionId}/chats/{chatId}/messages/{messageId}/cancel"),
}
MODEL_FUNCTIONS = {"send_message", "send_to_active_chat", "regenerate", "edit_message", "generate_reply"}
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
    # GetItem: a removed chat's head, which says which messages forks still share. PutItem and
    # UpdateItem: an expired session's receipt and the user's counters (one transaction).
    assert actions == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    (event,) = purge["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert '"eventName": ["REMOVE"]' in event["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"]


def test_the_erasure_consumer_is_invoked_by_writes_of_the_marker_only() -> None:
    """Every write of a counters item that carries the erasure marker invokes a step, and no
    other record: DELETE /me's first write and each step's hand-over (chat_sessions.keys)."""
    from chat_sessions import keys

    erase = functions(TEMPLATE)["EraseUserFunction"]
    (event,) = erase["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (only,) = event["Properties"]["FilterCriteria"]["Filters"]
    assert json.loads(only["Pattern"]) == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {
            "Keys": {"SK": {"S": [keys.QUOTA_SK]}},
            "NewImage": {keys.ERASING_SINCE: {"S": [{"exists": True}]}},
        },
    }


def test_read_only_functions_get_read_only_access() -> None:
    for name, resource in functions(TEMPLATE).items():
        events = list(resource["Properties"].get("Events", {}).values())  # none: the WebSocket API's
        if len(events) != 1 or events[0]["Type"] != "HttpApi":
            continue
        (event,) = events
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
        if props["Handler"].split(".")[0] not in MODEL_FUNCTIONS - {"generate_reply"}:
            continue  # the generating function's model deadline is its own timeout (services/generation)
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


def test_the_authorizer_trusts_the_given_issuer_else_its_own_user_pool() -> None:
    """No JwtIssuer: the stack's own Cognito pool and client (a Condition); else the given
    issuer and audience. The outputs name what a first token needs (README, "Deploy to AWS")."""
    params = TEMPLATE["Parameters"]
    assert params["JwtIssuer"]["Default"] == "" and params["JwtAudience"]["Default"] == ""
    assert TEMPLATE["Conditions"]["CreateUserPool"] == {"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}
    resources = TEMPLATE["Resources"]
    assert resources["UserPool"]["Condition"] == "CreateUserPool"
    assert resources["UserPoolClient"]["Condition"] == "CreateUserPool"
    client = resources["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False and "ALLOW_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"]
    assert resources["UserPool"]["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    api = resources["HttpApi"]["Properties"]["Auth"]
    jwt = api["Authorizers"][api["DefaultAuthorizer"]]["JwtConfiguration"]
    pool_issuer = {"Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}"}
    assert jwt == {
        "issuer": {"Fn::If": ["CreateUserPool", pool_issuer, {"Ref": "JwtIssuer"}]},
        "audience": {"Fn::If": ["CreateUserPool", [{"Ref": "UserPoolClient"}], {"Ref": "JwtAudience"}]},
    }
    outputs = TEMPLATE["Outputs"]
    assert {"ApiUrl", "TableName", "UserPoolId", "UserPoolClientId", "JwtIssuer"} <= set(outputs)
    assert outputs["UserPoolId"]["Condition"] == outputs["UserPoolClientId"]["Condition"] == "CreateUserPool"


def test_snapstart_is_a_parameter_off_by_default() -> None:
    param = TEMPLATE["Parameters"]["SnapStart"]
    assert param["Default"] == "None" and param["AllowedValues"] == ["None", "PublishedVersions"]
    glob = TEMPLATE["Globals"]["Function"]
    assert glob["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    # SnapStart applies to published versions only: the API must call one (the alias).
    assert glob["AutoPublishAlias"]


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
    # push.py: the WebSocket API's management client (apigatewaymanagementapi), not DynamoDB.
    assert importers == [
        "layers/common/python/chat_sessions/events.py",  # the domain events' EventBridge client
        "layers/common/python/chat_sessions/push.py",
        "layers/common/python/chat_sessions/services/replies.py",  # the Lambda client (asynchronous invoke)
        "layers/common/python/chat_sessions/store/__init__.py",
    ]


def test_the_websocket_api() -> None:
    """Routes by ``action``; ``$connect`` behind the REQUEST authorizer reading ``?token=`` (the
    HTTP API's issuer and audience); each function invocable by this API only; the URL output."""
    resources = TEMPLATE["Resources"]
    api = resources["WebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET" and api["RouteSelectionExpression"] == "$request.body.action"
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"$connect", "$disconnect", "subscribe", "$default"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert all(r.get("AuthorizationType", "NONE") == "NONE" for key, r in routes.items() if key != "$connect")
    authorizer = resources["WebSocketAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    env = resources["WsAuthorizeFunction"]["Properties"]["Environment"]["Variables"]
    http = resources["HttpApi"]["Properties"]["Auth"]["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
    assert env["JWT_ISSUER"] == http["issuer"]
    assert env["JWT_AUDIENCE"]["Fn::If"][0] == http["audience"]["Fn::If"][0] == "CreateUserPool"
    for name in ("WsAuthorizeFunction", "WsConnectFunction", "WsDisconnectFunction", "WsSubscribeFunction"):
        permission = resources[name.replace("Function", "Permission")]["Properties"]
        assert permission["FunctionName"] == {"Ref": f"{name}.Alias"}
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert "${WebSocketApi}/" in permission["SourceArn"]["Fn::Sub"]
    assert "wss://${WebSocketApi}" in TEMPLATE["Outputs"]["WebSocketUrl"]["Value"]["Fn::Sub"]
    # TTL removes what a missed $disconnect leaves: the table's TTL attribute is expiresAt.
    push = resources["PushMessagesFunction"]["Properties"]
    (stream,) = push["Events"].values()
    pattern = stream["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"]
    assert json.loads(pattern) == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"type": {"S": ["message"]}}},
    }


# The two ways to deploy: the stack's own Cognito user pool (the defaults), or an OIDC issuer
# given (the user pool, its client and their outputs left out by the CreateUserPool condition).
VARIANTS = {
    "own-user-pool": {},
    "given-issuer": {"JwtIssuer": "https://issuer.example.com/", "JwtAudience": "chat-sessions-api"},
}


def variant_template(name: str) -> str:
    """template.yaml with the variant's parameter values as defaults: the defaults are what
    cfn-lint and sam evaluate the conditions with."""
    text = (ROOT / "template.yaml").read_text()
    for parameter, value in VARIANTS[name].items():
        text, count = re.subn(
            rf"(\n  {parameter}:\n    Type: [A-Za-z]+\n    Default: )\"\"", rf"\g<1>{json.dumps(value)}", text
        )
        assert count == 1, f"no empty Default for {parameter}"
    return text


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = {}
    for name in sorted(VARIANTS):
        paths[name] = tmp_path_factory.mktemp(name) / "template.yaml"
        paths[name].write_text(variant_template(name))
    return paths


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, variants: dict[str, Path]) -> Path:
    return variants[request.param]


@pytest.fixture(scope="module")
def cfn_lint_findings(variants: dict[str, Path]) -> dict[Path, list[str]]:
    """One cfn-lint for both variants: it loads its schemas and rules once (5.2 CPU-s for one
    template, 6.5 for both; two runs took 10.4). Its findings, by template."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    paths = list(variants.values())
    result = subprocess.run([str(cfn_lint), "--format", "parseable", *map(str, paths)], capture_output=True, text=True)
    findings: dict[Path, list[str]] = {path: [] for path in paths}
    for line in result.stdout.splitlines():
        path = next((p for p in paths if line.startswith(f"{p}:")), None)
        assert path is not None, result.stdout + result.stderr  # a finding names its template
        findings[path].append(line)
    assert result.returncode == 0 or any(findings.values()), result.stdout + result.stderr
    return findings


def test_cfn_lint_is_clean(variant: Path, cfn_lint_findings: dict[Path, list[str]]) -> None:
    assert cfn_lint_findings[variant] == []


def test_sam_validate_lint_is_clean(variant: Path) -> None:
    """``sam validate --lint`` (SAM's translator, then cfn-lint on the result), offline, from the
    pinned SAM CLI in .venv-sam that ``make test`` installs (``make sam-validate``)."""
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    assert sam.is_file(), "the SAM CLI is missing: make sam-validate installs it into .venv-sam"
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--region", "us-east-1", "--template", str(variant)],
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
