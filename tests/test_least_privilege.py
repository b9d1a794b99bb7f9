"""Least privilege without gaps (issue 8): each function's IAM policy is derived from the AWS
calls its handler really makes, and ``template.yaml`` must grant exactly those.

Why: moto and DynamoDB Local allow every call, so a missing grant shows only when deployed, as
``AccessDenied`` (a ``500``) on whichever path first makes the call, often a rare one: a
``ConditionCheck`` that needs ``dynamodb:ConditionCheckItem``, the ``BatchGetItem`` of an
``Idempotency-Key`` repeat, the ``GetItem`` a send makes only after a lost answer. And a grant no
path uses is privilege nobody needs. Reading the code and listing actions by hand missed both.

How:

- Every handler is driven, in one world, through the paths the tests cover: happy paths,
  already-in-that-state paths, not found, refusals, each ``Idempotency-Key`` path, DynamoDB
  fighting back through the project's fault injector (lost answers, writes committed but
  answered 503, collisions, unprocessed batches), and replies raced by a concurrent commit
  staged while the handler waits for the model, so the retry reads run too. The stream
  consumer gets removal events.
- Each invocation runs with the environment the template gives that function (its own and the
  global variables, references resolved to this world), as after a cold start: the key
  parameter and the cursor secret are read the deployed way, from SSM Parameter Store and
  Secrets Manager (moto's ``mock_aws``), DynamoDB is a moto server behind the fault injector.
- A botocore ``before-call`` hook on every client created while the world runs (the store's,
  Powertools Idempotency's, Powertools Parameters') records each call with its request; a
  ``before-send`` hook counts DynamoDB attempts, which must match what the fault injector saw,
  so no DynamoDB request can bypass the recording.
- Each call becomes the IAM (action, resource ARN) pairs it needs: a transaction per item type
  (``Put``/``Update``/``Delete``/``ConditionCheck``), ``TransactGetItems`` as ``GetItem``, a
  SecureString read under a customer-managed key also ``kms:Decrypt`` on that key (through SSM).
- The function's statements in ``template.yaml`` are evaluated the same way (intrinsics
  resolved, the KMS condition both ways), and the two sets of pairs must be equal.
- The derivation is only as good as the paths driven: every place in the store and the
  services that can send a DynamoDB request must have sent one during the drive.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.handlers
import botocore.session
import pytest
from botocore.loaders import create_loader

from local_stack.faults import FaultInjector, parse_spec
from local_stack.template import ROOT, ensure_table, functions, load
from tests.support import LambdaContext, Result, invoke, load_event, reset_caches
from tests.upstream import Reply, Upstream, upstream

TEMPLATE = load()
FUNCTIONS: dict[str, dict[str, Any]] = {
    resource["Properties"]["Handler"].split(".")[0]: resource for resource in functions(TEMPLATE).values()
}
CHECKED = ("lambda:", "dynamodb:", "ssm:", "secretsmanager:", "kms:", "execute-api:", "events:")
"""The services whose grants must be exact. Others are SAM's (logs, X-Ray) or Lambda's own on the
function's behalf (the stream consumer's dead-letter queue), never called by our code."""
KMS_CONDITION = "HasOpenAIApiKeyKmsKey"
ALLOWED_POLICY_TEMPLATES = {"purge_deleted": {"SQSSendMessagePolicy"}, "erase_user": {"SQSSendMessagePolicy"}}
"""SAM policy templates a function may carry: none can hide a DynamoDB, SSM, Secrets Manager or
KMS grant. The stream consumer's lets Lambda send failed batches to the dead-letter queue."""
ALLOWED_POLICY_TEMPLATES["publish_events"] = {"SQSSendMessagePolicy"}  # its dead-letter queue, as the purge's
EVENT_BUS = "chat-sessions-lp-events"

PACKAGE = ROOT / "layers" / "common" / "python" / "chat_sessions"
PACKAGE_DIR = str(PACKAGE) + "/"
TABLE_REQUESTS = {
    "call",
    "transact",
    "get",
    "get_many",
    "get_batch",
    "update",
    "patch",
    "query",
    "page",
    "purge",
    "delete_keys",
}
"""The methods of ``store.table.Table`` that send DynamoDB requests."""

REGION, ACCOUNT, PARTITION = "us-east-1", "123456789012", "aws"
WEBSOCKET_API, WEBSOCKET_STAGE = "wsapi12345", "live"
MANAGE_CONNECTIONS = (
    "execute-api:ManageConnections",
    f"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:{WEBSOCKET_API}/{WEBSOCKET_STAGE}/POST/@connections/*",
)
"""What posting to any connection of the WebSocket API needs (IAM grants it by pattern: the
connection ids are API Gateway's, known only at run time)."""
NO_AWS_CALLS = {"ws_authorize"}
"""Functions that call no AWS API (the authorizer reads the issuer's keys over HTTPS): their
policies must grant nothing checked, and no scenario can drive a call."""
PARAMETER_NAME = "/chat-sessions/openai-api-key"
MODEL_KEY = "sk-least-privilege-from-ssm"
MAX_ACTIVE = 2
FAULTS_OFF = "seed=1"

TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
"""TransactWriteItems has no IAM action of its own: each item needs its own action."""
DYNAMODB_ITEM_CALLS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
}
"""Calls whose IAM action is ``dynamodb:<the call>``."""

Grant = tuple[str, str]
"""An IAM action and the resource ARN it is needed on (or granted on)."""


# --- recording ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsCall:
    """One API call a handler made: which function, in which scenario, and its request."""

    module: str
    scenario: str
    service: str
    operation: str
    request: dict[str, Any]
    stack: frozenset[tuple[str, int]]
    """The lines of the service's code the call was made from (file, line)."""

    def __str__(self) -> str:
        return f"{self.service}.{self.operation} in {self.scenario!r}"


@dataclass
class Recorder:
    """botocore hooks, registered as built-in handlers so that every botocore session created
    while they are installed (boto3's default one, rebuilt; each Powertools provider's) gives
    them to its clients. Calls are kept only while a handler runs (``module`` set): the world's
    own set-up and inspection calls are not the function's."""

    module: str | None = None
    scenario: str = ""
    calls: list[AwsCall] = field(default_factory=list)
    dynamodb_attempts: Counter[str] = field(default_factory=Counter)

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.module is None:
            return
        body = params.get("body")
        request = json.loads(body) if isinstance(body, bytes | str) and body else {}
        service = str(model.service_model.service_name)
        if service == "lambda":  # a REST API: the function is named in the path, the body is the payload
            request = {"FunctionName": params["url_path"].split("/")[3], "Payload": request}
        stack: set[tuple[str, int]] = set()
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.startswith(PACKAGE_DIR):
                stack.add((frame.f_code.co_filename, frame.f_lineno))
            frame = frame.f_back
        self.calls.append(AwsCall(self.module, self.scenario, service, str(model.name), request, frozenset(stack)))

    def before_send(self, request: Any, **_: Any) -> None:
        """One HTTP attempt (the SDK's retries included), as the fault injector counts them."""
        if self.module is None:
            return
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        self.dynamodb_attempts[target.rsplit(".", 1)[-1]] += 1


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    handlers: list[tuple[str, Callable[..., None]]] = [
        ("before-call", recorder.before_call),
        ("before-send.dynamodb", recorder.before_send),
    ]
    botocore.handlers.BUILTIN_HANDLERS[:0] = handlers
    try:
        yield
    finally:
        for handler in handlers:
            botocore.handlers.BUILTIN_HANDLERS.remove(handler)


def fresh_clients() -> None:
    """What a cold start has: no cached settings, store clients, model client or parameters,
    and boto3's default session rebuilt (so its clients carry the recorder's hooks)."""
    from aws_lambda_powertools.utilities import parameters

    boto3.DEFAULT_SESSION = None
    reset_caches()
    parameters.clear_caches()


# --- the template, evaluated ---------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The names the template's references resolve to in this world."""

    table: str
    secret_arn: str
    kms_key_arn: str
    model_url: str

    @property
    def table_arn(self) -> str:
        return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{self.table}"

    def refs(self, customer_key: bool) -> dict[str, str]:
        return {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "ChatTable": self.table,
            "ChatTable.Arn": self.table_arn,
            "EventBus": EVENT_BUS,
            "EventBus.Arn": event_bus_arn(EVENT_BUS),
            "CursorSigningKey": self.secret_arn,
            "OpenAIApiKeyParameterName": PARAMETER_NAME,
            "OpenAIApiKeyKmsKeyArn": self.kms_key_arn if customer_key else "",
            "OpenAIBaseUrl": self.model_url,
            "OpenAIModel": "gpt-4o-mini",
            "MaxActiveSessions": str(MAX_ACTIVE),
            "MonthlyTokenBudget": "0",
            "RetentionDays": "0",
            "ArchivedRetentionDays": "0",
            "ContextTokenBudget": "8000",
            "GenerateReplyFunction": "chat-sessions-GenerateReplyFunction",
            "GenerateReplyFunction.Arn": function_arn("chat-sessions-GenerateReplyFunction"),
            "GenerationTimeoutSeconds": "300",
            "LogLevel": "WARNING",
            "PowertoolsTraceDisabled": "true",
            "WebSocketApi": WEBSOCKET_API,
            "WebSocketStage": WEBSOCKET_STAGE,
            "AWS::URLSuffix": "amazonaws.com",
            "UserPool": f"{REGION}_pool",
            "UserPoolClient": "app-client-id",
        }


def resolve(value: Any, refs: dict[str, str]) -> str:
    """A template value (a string, ``Ref``, ``Fn::GetAtt`` or ``Fn::Sub``) in this world; any
    other intrinsic, or an unknown name, fails: a new construct must be taught here."""
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref" or name == "Fn::GetAtt":
            return refs[arg if isinstance(arg, str) else ".".join(arg)]
        if name == "Fn::If" and arg[0] == "CreateUserPool":  # the default: the stack's own user pool
            return resolve(arg[1], refs)
        if name == "Fn::Sub" and isinstance(arg, str):
            out = arg
            for ref, resolved in refs.items():
                out = out.replace("${" + ref + "}", resolved)
            assert "${" not in out, f"unresolved in {arg!r}"
            return out
    raise AssertionError(f"cannot evaluate {value!r}")


def policies(module: str, customer_key: bool) -> list[Any]:
    """The function's policies with the KMS condition decided (``AWS::NoValue`` dropped)."""
    out = []
    for policy in FUNCTIONS[module]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Fn::If" in policy:
            condition, then, otherwise = policy["Fn::If"]
            assert condition == KMS_CONDITION, condition
            policy = then if customer_key else otherwise
        if policy != {"Ref": "AWS::NoValue"}:
            out.append(policy)
    return out


def granted(module: str, world: World, customer_key: bool) -> set[Grant]:
    """Every (action, resource) an Allow statement of the function grants in a checked service."""
    refs = world.refs(customer_key)
    pairs: set[Grant] = set()
    for policy in policies(module, customer_key):
        if not (isinstance(policy, dict) and "Statement" in policy):
            continue  # a SAM policy template, checked apart
        for statement in policy["Statement"]:
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
            assert statement["Effect"] == "Allow", statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            resources = [resolve(r, refs) for r in listed]
            if "Condition" in statement:
                # Only the key parameter's KMS key carries one, and it must keep that key to SSM.
                assert actions == ["kms:Decrypt"], statement
                assert statement["Condition"] == {
                    "StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}
                }, statement
            pairs |= {(a, r) for a in actions for r in resources if a.startswith(CHECKED)}
    return pairs


def function_environment(module: str, world: World) -> dict[str, str]:
    """What Lambda sets for the function: the global variables, then its own."""
    variables = {
        **TEMPLATE["Globals"]["Function"]["Environment"]["Variables"],
        **FUNCTIONS[module]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    refs = world.refs(customer_key=True)
    return {name: resolve(value, refs) for name, value in variables.items()}


TEMPLATE_VARIABLES = {
    name
    for resource in [TEMPLATE["Globals"]["Function"], *(r["Properties"] for r in FUNCTIONS.values())]
    for name in resource.get("Environment", {}).get("Variables", {})
}


# --- calls to IAM --------------------------------------------------------------------------------


def needed(call: AwsCall, parameter_key: str | None) -> set[Grant]:
    """The (action, resource) pairs IAM checks for ``call``. ``parameter_key``: the customer-
    managed KMS key of the SecureString parameter, None for the AWS-managed ``aws/ssm`` key
    (which needs no grant: its key policy admits the account's principals through SSM)."""
    request, operation = call.request, call.operation
    if call.service == "dynamodb":
        if "IndexName" in request:  # an index is a resource of its own: the table's ARN does not cover it
            assert operation == "Query", call
            return {("dynamodb:Query", f"{table_arn(request['TableName'])}/index/{request['IndexName']}")}
        if operation == "TransactWriteItems":
            return {
                (TRANSACT_ITEM_ACTIONS[kind], table_arn(op["TableName"]))
                for item in request["TransactItems"]
                for kind, op in item.items()
            }
        if operation == "TransactGetItems":
            return {("dynamodb:GetItem", table_arn(item["Get"]["TableName"])) for item in request["TransactItems"]}
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return {(f"dynamodb:{operation}", table_arn(name)) for name in request["RequestItems"]}
        if operation in DYNAMODB_ITEM_CALLS:
            return {(f"dynamodb:{operation}", table_arn(request["TableName"]))}
    if call.service == "ssm" and operation in ("GetParameter", "GetParameters"):
        names = [request["Name"]] if operation == "GetParameter" else request["Names"]
        pairs = {(f"ssm:{operation}", parameter_arn(name)) for name in names}
        if request.get("WithDecryption") and parameter_key is not None:
            pairs.add(("kms:Decrypt", parameter_key))
        return pairs
    if call.service == "apigatewaymanagementapi" and operation == "PostToConnection":
        return {MANAGE_CONNECTIONS}
    if call.service == "events" and operation == "PutEvents":
        return {("events:PutEvents", event_bus_arn(entry["EventBusName"])) for entry in request["Entries"]}
    if call.service == "lambda" and operation == "Invoke":
        name = request["FunctionName"]
        return {("lambda:InvokeFunction", name if name.startswith("arn:") else function_arn(name))}
    if call.service == "secretsmanager" and operation == "GetSecretValue":
        secret = request["SecretId"]
        assert secret.startswith("arn:"), f"{call} names the secret, not its ARN: the grant is by ARN"
        return {("secretsmanager:GetSecretValue", secret)}
    raise AssertionError(f"{call}: no IAM mapping for this call yet; add one here and the grant to the template")


def function_arn(name: str) -> str:
    return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"


def table_arn(name: str) -> str:
    return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def event_bus_arn(name: str) -> str:
    return f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def parameter_arn(name: str) -> str:
    return f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter{name if name.startswith('/') else '/' + name}"


# --- where the code can make a request ---------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A call in the service's code that can lead to a DynamoDB request."""

    path: str
    first: int
    last: int
    text: str

    def __str__(self) -> str:
        return f"{os.path.relpath(self.path, ROOT)}:{self.first}: {self.text}"


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def request_sites() -> list[Site]:
    """In the store, every call of a ``Table`` request method; in the services and the HTTP
    glue, every call made on the store or handed it (``store...``, ``get_store()``). A site no
    scenario reaches is a path whose calls nobody derived: the drive must grow to cover it."""
    sites = []
    callers = "\n".join(
        p.read_text() for p in [*PACKAGE.rglob("*.py"), *(ROOT / "functions").glob("*.py")] if p.name != "table.py"
    )
    files = [p for p in (PACKAGE / "store").glob("*.py") if p.name != "table.py"]
    files += [*(PACKAGE / "services").glob("*.py"), PACKAGE / "api.py"]
    for path in sorted(files):
        source = path.read_text()
        tree = ast.parse(source)
        unused = {  # store methods no code of the service calls (kept for tests): no handler's path
            f.name
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and path.parent.name == "store" and f".{f.name}(" not in callers
        }
        skipped = {
            (n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in unused
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or any(a <= node.lineno <= (b or a) for a, b in skipped):
                continue
            func = node.func
            on_table = isinstance(func, ast.Attribute) and func.attr in TABLE_REQUESTS and "table" in ast.unparse(func)
            in_store = path.parent.name == "store"
            handed = any(_root(arg) == "store" or ast.unparse(arg) == "get_store()" for arg in node.args)
            if (in_store and on_table) or (not in_store and (_root(func) == "store" or handed)):
                text = ast.get_source_segment(source, node) or ""
                sites.append(Site(str(path), node.lineno, node.end_lineno or node.lineno, text.split("\n")[0]))
    return sites


# --- driving the handlers ------------------------------------------------------------------------


class Driver:
    """Invokes handlers as Lambda would: the function's template environment, a cold start when
    the function (or an extra setting) changes, every call recorded under the function."""

    def __init__(
        self,
        world: World,
        recorder: Recorder,
        injector: FaultInjector,
        monkeypatch: pytest.MonkeyPatch,
        model: Upstream,
        backend: Any,
    ) -> None:
        self.world = world
        self.recorder = recorder
        self.injector = injector
        self.monkeypatch = monkeypatch
        self.model = model
        self.backend = backend
        """The table's DynamoDB, reached past the fault injector, for the world's own writes."""
        self._container: tuple[str, tuple[tuple[str, str], ...]] | None = None
        self._users = 0

    def user(self) -> str:
        """A user of one scenario only: quotas and listings do not leak between scenarios."""
        self._users += 1
        return f"user-{self._users}-{uuid.uuid4().hex[:8]}"

    def _cold_start(self, module: str, extra: dict[str, str]) -> None:
        """Another function runs in a container of its own: its parameters and secrets are not
        cached yet (Powertools' cache is per container). Clients and settings are rebuilt when
        the environment differs; functions with the same environment share them, which changes
        nothing they call, and saves loading botocore's service models again."""
        environment = {**function_environment(module, self.world), **extra}
        container = (module, tuple(sorted(environment.items())))
        if container == self._container:
            return
        if self._container is None or container[1] != self._container[1]:
            for name in TEMPLATE_VARIABLES:
                self.monkeypatch.delenv(name, raising=False)
            for name, value in environment.items():
                self.monkeypatch.setenv(name, value)
            fresh_clients()
        else:
            from aws_lambda_powertools.utilities import parameters

            parameters.clear_caches()
        self._container = container

    def _run(self, module: str, extra: dict[str, str] | None, run: Callable[[], Any]) -> Any:
        self._cold_start(module, extra or {})
        before = Counter(self.injector.snapshot()["calls"])
        self.recorder.dynamodb_attempts.clear()
        self.recorder.module = module
        try:
            result = run()
        finally:
            self.recorder.module = None
        seen = Counter(self.injector.snapshot()["calls"]) - before
        assert seen == self.recorder.dynamodb_attempts, (
            f"{module}: DynamoDB requests the recorder did not see: {seen - self.recorder.dynamodb_attempts}"
        )
        return result

    def call(self, module: str, *, env: dict[str, str] | None = None, **kwargs: Any) -> Result:
        """``invoke(module, ...)`` with the function's environment, recorded."""
        result: Result = self._run(module, env, lambda: invoke(module, **kwargs))
        return result

    def stream(self, pk: str, sk: str, old_image: dict[str, Any] | None = None) -> Any:
        """The stream consumer with one ``REMOVE`` record of ``(pk, sk)``; with ``old_image``
        (wire format), a removal by DynamoDB's TTL."""
        event = copy.deepcopy(load_event("purge_deleted"))
        event["Records"][0]["dynamodb"]["Keys"] = {"PK": {"S": pk}, "SK": {"S": sk}}
        if old_image is not None:
            event["Records"][0]["dynamodb"]["OldImage"] = old_image
            event["Records"][0]["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        handler = importlib.import_module("purge_deleted").lambda_handler
        return self._run("purge_deleted", None, lambda: handler(event, LambdaContext()))

    def websocket(self, module: str, user: str, connection: str, body: Any = None) -> Any:
        """A WebSocket route's function with its events/ event, as API Gateway invokes it."""
        event = copy.deepcopy(load_event(module))
        event["requestContext"]["connectionId"] = connection
        event["requestContext"]["authorizer"].update({"userId": user, "principalId": user})
        if body is not None:
            event["body"] = json.dumps(body)
        handler = importlib.import_module(module).lambda_handler
        result = self._run(module, None, lambda: handler(event, LambdaContext()))
        return json.loads(result["body"]) if "body" in result else result

    def push(self, event: dict[str, Any]) -> Any:
        handler = importlib.import_module("push_messages").lambda_handler
        return self._run("push_messages", None, lambda: handler(event, LambdaContext()))

    def set_faults(self, spec: str) -> None:
        """The injector's faults from now on (``FAULTS_OFF``: none)."""
        parsed = parse_spec(spec)
        assert parsed is not None, spec
        self.injector.spec = parsed

    @contextmanager
    def at_model_call(self, action: Callable[[], None]) -> Iterator[None]:
        """``action`` runs once, when the handler inside the block calls the model: between
        its reads and its reply's transaction, where a concurrent request's commit lands. It
        runs before the model answers, so the handler meets it, every time."""
        done: list[bool] = []
        failed: list[BaseException] = []
        original = self.model.next_reply

        def next_reply(request: dict[str, Any], authorization: str) -> Reply:
            if not done:
                done.append(True)
                try:
                    action()
                except BaseException as exc:  # shown by the block, not lost in the server's thread
                    failed.append(exc)
            return original(request, authorization)

        self.monkeypatch.setattr(self.model, "next_reply", next_reply)
        try:
            yield
        finally:
            self.monkeypatch.setattr(self.model, "next_reply", original)
        if failed:
            raise failed[0]
        assert done, "the model was not called"

    @contextmanager
    def faults_from_model_call(self, spec: str) -> Iterator[None]:
        """``faults(spec)`` switched on when the handler calls the model: its reply's
        transaction meets them, its user message's did not."""
        before = self.injector.snapshot()["faults_total"]
        try:
            with self.at_model_call(lambda: self.set_faults(spec)):
                yield
        finally:
            self.set_faults(FAULTS_OFF)
        assert self.injector.snapshot()["faults_total"] > before, f"{spec}: no fault was injected"

    def injected(self, kind: str, operation: str) -> int:
        """How many faults of ``kind`` the injector has given ``operation`` so far."""
        return int(self.injector.snapshot()["faults"].get(kind, {}).get(operation, 0))

    @contextmanager
    def faults(self, spec: str) -> Iterator[None]:
        """DynamoDB fights back (``spec`` as ``DYNAMODB_FAULTS`` spells it) inside the block,
        which must have met at least one fault."""
        before = self.injector.snapshot()["faults_total"]
        self.set_faults(spec)
        try:
            yield
        finally:
            self.set_faults(FAULTS_OFF)
        assert self.injector.snapshot()["faults_total"] > before, f"{spec}: no fault was injected"


def expect(result: Result, status: int, code: str | None = None) -> Any:
    """The answer must be the path the scenario means to take; its body is returned."""
    assert result.status == status, result
    if code is not None:
        assert result.body["error"]["code"] == code, result
    return result.body


def key(name: str) -> dict[str, str]:
    """A fresh ``Idempotency-Key`` header: keys are per user and route, never reused by accident."""
    return {"Idempotency-Key": f"{name}-{uuid.uuid4().hex[:8]}"}


MISSING = "01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z"
"""An id that names nothing."""


def session(d: Driver, user: str, name: str = "s") -> str:
    return str(expect(d.call("create_session", user=user, body={"name": name}), 201)["sessionId"])


def chat(d: Driver, user: str, sid: str, name: str = "c") -> str:
    return str(expect(d.call("create_chat", user=user, session=sid, body={"name": name}), 201)["chatId"])


def keyed(
    d: Driver,
    module: str,
    status: int,
    ok: dict[str, Any],
    other: dict[str, Any],
    failing: dict[str, Any],
    failing_status: int,
) -> None:
    """A POST under an ``Idempotency-Key``: the first call, its repeat (the first answer back),
    the same key with another request (422), and a failing call (Powertools deletes its claim)."""
    k = key(module)
    first = expect(d.call(module, headers=k, **ok), status)
    assert expect(d.call(module, headers=k, **ok), status) == first, f"{module}: the repeat answered otherwise"
    expect(d.call(module, headers=k, **other), 422, "idempotency_key_reused")
    expect(d.call(module, headers=key(f"{module}-failing"), **failing), failing_status)


# --- scenarios: each drives one area through the paths its tests cover ---------------------------


def sessions_and_quota(d: Driver) -> None:
    """Create up to the limit and past it, get, PATCH (a name, nothing, a missing session),
    pause and resume (each also in the state it asks for, at the limit, and missing)."""
    u = d.user()
    a, b = session(d, u, "a"), session(d, u, "b")
    expect(d.call("create_session", user=u, body={"name": "c"}), 409, "session_limit_reached")
    expect(d.call("get_session", user=u, session=a), 200)
    expect(d.call("get_session", user=u, session=MISSING), 404)
    expect(d.call("update_session", user=u, session=a, body={"name": "renamed", "metadata": {"k": "v"}}), 200)
    expect(d.call("update_session", user=u, session=a, body={}), 200)
    expect(d.call("update_session", user=u, session=MISSING, body={"name": "x"}), 404)
    expect(d.call("update_session", user=u, session=MISSING, body={}), 404)
    assert expect(d.call("pause_session", user=u, session=a), 200)["status"] == "paused"
    assert expect(d.call("pause_session", user=u, session=a), 200)["status"] == "paused"
    assert expect(d.call("resume_session", user=u, session=b), 200)["status"] == "active"
    session(d, u, "c")  # a's place, taken while a is paused
    expect(d.call("resume_session", user=u, session=a), 409, "session_limit_reached")
    expect(d.call("pause_session", user=u, session=MISSING), 404)
    expect(d.call("resume_session", user=u, session=MISSING), 404)
    assert expect(d.call("pause_session", user=u, session=b), 200)["status"] == "paused"
    assert expect(d.call("resume_session", user=u, session=a), 200)["status"] == "active"


def sessions_listed_and_deleted(d: Driver) -> None:
    """List page by page (a cursor signed and checked with the secret), a forged cursor, an
    empty listing; delete a paused and an active session with chats and messages, and a
    missing one."""
    u = d.user()
    a, b = session(d, u, "a"), session(d, u, "b")
    c = chat(d, u, b)
    expect(d.call("send_message", user=u, session=b, chat=c, body={"content": "hi"}), 201)
    page = expect(d.call("list_sessions", user=u, query={"limit": "1"}), 200)
    assert page["nextCursor"], page
    expect(d.call("list_sessions", user=u, query={"limit": "1", "cursor": page["nextCursor"]}), 200)
    expect(d.call("list_sessions", user=u, query={"limit": "1", "cursor": "e30.AAAA"}), 400, "validation_error")
    expect(d.call("list_sessions", user=u, query={"status": "active", "limit": "1"}), 200)
    expect(d.call("list_sessions", user=u, query={"status": "archived"}), 200)
    assert expect(d.call("list_sessions", user=d.user()), 200)["items"] == []
    expect(d.call("pause_session", user=u, session=a), 200)
    expect(d.call("delete_session", user=u, session=a), 204)
    expect(d.call("delete_session", user=u, session=b), 204)
    expect(d.call("delete_session", user=u, session=MISSING), 404)


def chats(d: Driver) -> None:
    """Create (first chat, then one that takes over), get, PATCH (name; model and system
    prompt, which change the head; nothing; missing), activate (another chat, the active one,
    missing), list by pages, delete (inactive, active with messages, missing)."""
    u = d.user()
    sid = session(d, u)
    first, second = chat(d, u, sid, "a"), chat(d, u, sid, "b")
    expect(d.call("create_chat", user=u, session=MISSING, body={"name": "x"}), 404)
    expect(d.call("get_chat", user=u, session=sid, chat=first), 200)
    expect(d.call("get_chat", user=u, session=sid, chat=MISSING), 404)
    expect(d.call("update_chat", user=u, session=sid, chat=first, body={"name": "renamed"}), 200)
    expect(d.call("update_chat", user=u, session=sid, chat=first, body={"model": "gpt-4o", "systemPrompt": "Be"}), 200)
    expect(d.call("update_chat", user=u, session=sid, chat=first, body={"systemPrompt": None}), 200)
    expect(d.call("update_chat", user=u, session=sid, chat=first, body={}), 200)
    expect(d.call("update_chat", user=u, session=sid, chat=MISSING, body={"name": "x"}), 404)
    expect(d.call("update_chat", user=u, session=sid, chat=MISSING, body={"model": "gpt-4o"}), 404)
    expect(d.call("update_chat", user=u, session=sid, chat=MISSING, body={}), 404)
    assert expect(d.call("activate_chat", user=u, session=sid, chat=first), 200)["active"] is True
    assert expect(d.call("activate_chat", user=u, session=sid, chat=first), 200)["active"] is True
    expect(d.call("activate_chat", user=u, session=sid, chat=MISSING), 404)
    expect(d.call("activate_chat", user=u, session=MISSING, chat=first), 404)
    page = expect(d.call("list_chats", user=u, session=sid, query={"limit": "1"}), 200)
    assert page["nextCursor"], page
    expect(d.call("list_chats", user=u, session=sid, query={"limit": "1", "cursor": page["nextCursor"]}), 200)
    expect(d.call("list_chats", user=u, session=sid, query={"cursor": "e30.AAAA"}), 400, "validation_error")
    expect(d.call("list_chats", user=u, session=MISSING), 404)
    expect(d.call("send_message", user=u, session=sid, chat=first, body={"content": "hi"}), 201)
    expect(d.call("delete_chat", user=u, session=sid, chat=second), 204)
    expect(d.call("delete_chat", user=u, session=sid, chat=first), 204)
    expect(d.call("delete_chat", user=u, session=sid, chat=MISSING), 404)


def messages(d: Driver) -> None:
    """Send (to the active chat; to an inactive one; to a missing chat; the model failing),
    list by pages both ways (an empty chat, a missing one, a forged cursor), regenerate (the
    active chat, an inactive one, one with nothing to answer, missing, the model failing, and
    a chat whose newest messages are all replies)."""
    u = d.user()
    sid = session(d, u)
    inactive, active = chat(d, u, sid, "a"), chat(d, u, sid, "b")
    expect(d.call("send_message", user=u, session=sid, chat=active, body={"content": "hi"}), 201)
    expect(d.call("send_message", user=u, session=sid, chat=inactive, body={"content": "hi"}), 409, "chat_not_active")
    expect(d.call("send_message", user=u, session=sid, chat=MISSING, body={"content": "hi"}), 404)
    d.model.script = [Reply(status=500)]
    expect(d.call("send_message", user=u, session=sid, chat=active, body={"content": "lost"}), 502, "upstream_error")
    for order in ("asc", "desc"):
        page = expect(
            d.call("list_messages", user=u, session=sid, chat=active, query={"limit": "1", "order": order}), 200
        )
        query = {"limit": "1", "order": order, "cursor": page["nextCursor"]}
        expect(d.call("list_messages", user=u, session=sid, chat=active, query=query), 200)
    assert expect(d.call("list_messages", user=u, session=sid, chat=inactive), 200)["items"] == []
    expect(d.call("list_messages", user=u, session=sid, chat=MISSING), 404)
    expect(d.call("list_messages", user=u, session=sid, chat=active, query={"cursor": "e30.AAAA"}), 400)
    expect(d.call("regenerate", user=u, session=sid, chat=active), 201)
    expect(d.call("regenerate", user=u, session=sid, chat=inactive), 409, "chat_not_active")
    expect(d.call("regenerate", user=u, session=sid, chat=MISSING), 404)
    d.model.script = [Reply(status=500)]
    expect(d.call("regenerate", user=u, session=sid, chat=active), 502, "upstream_error")
    empty = chat(d, u, sid, "empty")
    expect(d.call("regenerate", user=u, session=sid, chat=empty), 409, "nothing_to_regenerate")
    expect(d.call("activate_chat", user=u, session=sid, chat=active), 200)
    # The thread read holds only the newest message, a reply: the user message is looked up.
    expect(d.call("regenerate", user=u, session=sid, chat=active, env={"CONTEXT_MAX_MESSAGES": "1"}), 201)


def sending_to_the_active_chat(d: Driver) -> None:
    """Send to the session's active chat; a session without one; a paused session (both
    routes, and regenerate); a missing session."""
    u = d.user()
    sid = session(d, u)
    expect(d.call("send_to_active_chat", user=u, session=sid, body={"content": "hi"}), 409, "no_active_chat")
    c = chat(d, u, sid)
    expect(d.call("send_to_active_chat", user=u, session=sid, body={"content": "hi"}), 201)
    expect(d.call("send_to_active_chat", user=u, session=MISSING, body={"content": "hi"}), 404)
    expect(d.call("pause_session", user=u, session=sid), 200)
    expect(d.call("send_to_active_chat", user=u, session=sid, body={"content": "hi"}), 409, "session_paused")
    expect(d.call("send_message", user=u, session=sid, chat=c, body={"content": "hi"}), 409, "session_paused")
    expect(d.call("regenerate", user=u, session=sid, chat=c), 409, "session_paused")


def idempotency_keys(d: Driver) -> None:
    """Every POST under an ``Idempotency-Key``: first, repeat, same key with another request,
    a failing request; and for the sends, a repeat after the model failed (the stored message
    is answered) and another request after that failure (422 from the send's marker)."""
    u = d.user()
    sid = session(d, u)  # the keyed create below takes u's second place: the failing one is refused
    keyed(
        d,
        "create_session",
        201,
        {"user": u, "body": {"name": "k"}},
        {"user": u, "body": {"name": "other"}},
        {"user": u, "body": {"name": "over the limit"}},
        409,
    )
    keyed(
        d,
        "pause_session",
        200,
        {"user": u, "session": sid},
        {"user": u, "session": MISSING},
        {"user": u, "session": MISSING},
        404,
    )
    keyed(
        d,
        "resume_session",
        200,
        {"user": u, "session": sid},
        {"user": u, "session": MISSING},
        {"user": u, "session": MISSING},
        404,
    )
    for module in ("archive_session", "unarchive_session"):
        keyed(
            d,
            module,
            200,
            {"user": u, "session": sid},
            {"user": u, "session": MISSING},
            {"user": u, "session": MISSING},
            404,
        )
    expect(d.call("resume_session", user=u, session=sid), 200)  # unarchived, it was paused
    keyed(
        d,
        "create_chat",
        201,
        {"user": u, "session": sid, "body": {"name": "k"}},
        {"user": u, "session": sid, "body": {"name": "other"}},
        {"user": u, "session": MISSING, "body": {"name": "k"}},
        404,
    )
    first, second = chat(d, u, sid, "a"), chat(d, u, sid, "b")
    keyed(
        d,
        "activate_chat",
        200,
        {"user": u, "session": sid, "chat": first},
        {"user": u, "session": sid, "chat": second},
        {"user": u, "session": sid, "chat": MISSING},
        404,
    )
    where: dict[str, Any] = {"user": u, "session": sid, "chat": first}
    keyed(
        d,
        "send_message",
        201,
        {**where, "body": {"content": "k"}},
        {**where, "body": {"content": "other"}},
        {**where, "chat": MISSING, "body": {"content": "k"}},
        404,
    )
    keyed(
        d,
        "send_to_active_chat",
        201,
        {"user": u, "session": sid, "body": {"content": "k"}},
        {"user": u, "session": sid, "body": {"content": "other"}},
        {"user": u, "session": MISSING, "body": {"content": "k"}},
        404,
    )
    keyed(d, "regenerate", 201, where, {**where, "chat": second}, {**where, "chat": MISSING}, 404)
    routes: list[tuple[str, dict[str, Any]]] = [
        ("send_message", where),
        ("send_to_active_chat", {"user": u, "session": sid}),
    ]
    for module, route in routes:
        k = key(f"{module}-after-502")
        d.model.script = [Reply(status=500)]
        expect(d.call(module, headers=k, **route, body={"content": "again"}), 502, "upstream_error")
        retried = expect(d.call(module, headers=k, **route, body={"content": "again"}), 201)
        assert retried["userMessage"]["content"] == "again"
        d.model.script = [Reply(status=500)]
        k = key(f"{module}-other-after-502")
        expect(d.call(module, headers=k, **route, body={"content": "one"}), 502, "upstream_error")
        expect(d.call(module, headers=k, **route, body={"content": "two"}), 422, "idempotency_key_reused")
    d.model.script = [Reply(status=500)]
    expect(d.call("regenerate", headers=key("regenerate-502"), **where), 502, "upstream_error")


def lost_answers(d: Driver) -> None:
    """Every transaction commits and its answer is lost. The SDK replays it with the same
    ``ClientRequestToken``; moto ignores tokens and refuses the replay, so each operation must
    recognise its own write (the landed checks, the purge after a delete that happened) and
    answer success. A transaction whose replay would commit again (a PATCH of the head) is
    answered by the token, as DynamoDB does. Lost single writes are left out: the SDK replays
    the same call and no path reads after one."""
    u = d.user()
    with d.faults("seed=1,lost=1,tokens=backend"):
        sid = session(d, u)
        first = chat(d, u, sid, "a")
        second = chat(d, u, sid, "b")
        expect(d.call("activate_chat", user=u, session=sid, chat=first), 200)
        expect(d.call("send_message", user=u, session=sid, chat=first, body={"content": "hi"}), 201)
        k = key("lost-send")
        expect(d.call("send_message", user=u, session=sid, chat=first, body={"content": "k"}, headers=k), 201)
        expect(d.call("send_to_active_chat", user=u, session=sid, body={"content": "hi"}, headers=key("lost")), 201)
        expect(d.call("regenerate", user=u, session=sid, chat=first, headers=key("lost")), 201)
        expect(d.call("delete_chat", user=u, session=sid, chat=second), 204)
        expect(d.call("pause_session", user=u, session=sid), 200)
        expect(d.call("resume_session", user=u, session=sid), 200)
    with d.faults("seed=1,lost=1"):
        expect(d.call("update_chat", user=u, session=sid, chat=first, body={"model": "gpt-4o"}), 200)
    with d.faults("seed=1,lost=1,tokens=backend"):
        expect(d.call("delete_session", user=u, session=sid), 204)


def committed_but_answered_503(d: Driver) -> None:
    """A keyed create or send commits, its answer is lost and the SDK's retries fail too: the
    client gets ``503`` and Powertools releases the key. The repeat meets the write's marker
    and reads it back (and what it created); another request under that key is refused."""
    u = d.user()
    session(d, u, "warm-up")  # the user's quota counter exists
    k = key("503-session")
    with d.faults("seed=1,lost=1,lost_retries=1"):
        expect(d.call("create_session", user=u, body={"name": "s"}, headers=k), 503, "unavailable")
    expect(d.call("create_session", user=u, body={"name": "other"}, headers=k), 422, "idempotency_key_reused")
    sid = expect(d.call("create_session", user=u, body={"name": "s"}, headers=k), 201)["sessionId"]
    k = key("503-chat")
    with d.faults("seed=1,lost=1,lost_retries=1"):
        expect(d.call("create_chat", user=u, session=sid, body={"name": "c"}, headers=k), 503, "unavailable")
    expect(d.call("create_chat", user=u, session=sid, body={"name": "other"}, headers=k), 422)
    c = expect(d.call("create_chat", user=u, session=sid, body={"name": "c"}, headers=k), 201)["chatId"]
    requests: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = [
        ("send_message", 201, {"session": sid, "chat": c}, {"session": sid, "chat": c}),
        ("send_to_active_chat", 201, {"session": sid}, {"session": sid}),
    ]
    for module, status, where, other in requests:
        k = key(f"503-{module}")
        with d.faults("seed=1,lost=1,lost_retries=1"):
            expect(d.call(module, user=u, headers=k, body={"content": "hi"}, **where), 503, "unavailable")
        expect(d.call(module, user=u, headers=k, body={"content": "other"}, **other), 422)
        expect(d.call(module, user=u, headers=k, body={"content": "hi"}, **where), status)


def newest_message(d: Driver, user: str, sid: str, chat_id: str) -> Any:
    from chat_sessions import keys
    from chat_sessions.items import MessageItem
    from chat_sessions.store import plain

    found = d.backend.query(
        TableName=d.world.table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
        ExpressionAttributeValues={":pk": keys.session_partition(user, sid), ":prefix": keys.message_prefix(chat_id)},
        Limit=1,
        ConsistentRead=True,
    )["Items"]
    return MessageItem.from_item(plain(found[0]))


def stage(d: Driver, user: str, *messages: Any) -> None:
    """Store messages as a concurrent request would have (past the recorder and the injector)."""
    from chat_sessions import keys

    for m in messages:
        key = keys.message_key(user, m.session_id, m.chat_id, m.seq)
        d.backend.put_item(TableName=d.world.table, Item={**key, **m.to_item()})


def another_message_takes_the_next_seq(d: Driver, user: str, sid: str, chat_id: str) -> None:
    """A concurrent send's user message, at the seq the reply was about to take."""
    from chat_sessions.ids import new_id

    newest = newest_message(d, user, sid, chat_id)
    stage(d, user, newest.model_copy(update={"seq": newest.seq + 1, "message_id": new_id()}))


def a_concurrent_regenerate_answers_first(d: Driver, user: str, sid: str, chat_id: str) -> None:
    """A concurrent regenerate's reply to the message being answered, and that message
    turned ``complete`` by it."""
    from chat_sessions.ids import new_id

    asked = newest_message(d, user, sid, chat_id)
    reply = asked.model_copy(
        update={
            "seq": asked.seq + 1,
            "message_id": new_id(),
            "role": "assistant",
            "status": "complete",
            "model": "gpt-4o-mini",
            "reply_to_seq": asked.seq,
        }
    )
    stage(d, user, reply, asked.model_copy(update={"status": "complete", "reply_seq": reply.seq}))


def marker_key_of(user: str, key_value: str) -> Any:
    """Where a regenerate's ``Idempotency-Key`` keeps its marker (the key hashed with the route)."""
    import hashlib

    from chat_sessions import keys

    route = load_event("regenerate")["routeKey"]
    return keys.marker_key(user, hashlib.sha256(f"{route}\n{key_value}".encode()).hexdigest())


def a_marker_for_the_key_appears(d: Driver, user: str, key_value: str, like: dict[str, Any]) -> None:
    """The marker another attempt under the same ``Idempotency-Key`` (past Powertools' claim,
    whose in-progress expiry ran out) committed with its reply: ``like``, another key's marker
    for the same request and exchange."""
    d.backend.put_item(TableName=d.world.table, Item={**like, **marker_key_of(user, key_value)})


def raced_replies(d: Driver) -> None:
    """While a send or regenerate waits for the model, the chat changes under it, as a
    concurrent request's commit would change it: another message takes the reply's seq (the
    reply reads the newest seq again); a concurrent regenerate answers the message first (the
    reply reads it again, and counts it once); the reply commits but its answer is lost for
    good (503), and the keyed repeat reads back what was stored; a keyed regenerate meets its
    key's marker in the reply's transaction."""
    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    where: dict[str, Any] = {"user": u, "session": sid, "chat": c}
    with d.at_model_call(lambda: another_message_takes_the_next_seq(d, u, sid, c)):
        expect(d.call("send_message", **where, body={"content": "raced"}), 201)
    with d.at_model_call(lambda: a_concurrent_regenerate_answers_first(d, u, sid, c)):
        expect(d.call("send_message", **where, body={"content": "answered meanwhile"}), 201)
    for module, body in (("send_message", {"content": "lost reply"}), ("regenerate", None)):
        k = key(f"{module}-reply-lost")
        with d.faults_from_model_call("seed=1,lost=1,lost_retries=1"):
            expect(d.call(module, **where, body=body, headers=k), 503, "unavailable")
        expect(d.call(module, **where, body=body, headers=k), 201)
    first = key("regenerate-first")
    exchange = expect(d.call("regenerate", **where, headers=first), 201)
    like = d.backend.get_item(TableName=d.world.table, Key=marker_key_of(u, first["Idempotency-Key"]))["Item"]
    k = key("regenerate-raced")
    with d.at_model_call(lambda: a_marker_for_the_key_appears(d, u, k["Idempotency-Key"], like)):
        assert expect(d.call("regenerate", **where, headers=k), 201) == exchange


def collisions(d: Driver) -> None:
    """Every transaction cancelled for a collision, every single write refused for a
    transaction in flight: retried, then ``409 conflict``; with an ``Idempotency-Key`` the
    claim is released."""
    u = d.user()
    sid = session(d, u)
    first, second = chat(d, u, sid, "a"), chat(d, u, sid, "b")
    with d.faults("seed=1,tx_conflict=1"):
        for module, kwargs in (
            ("create_session", {"body": {"name": "x"}}),
            ("create_chat", {"session": sid, "body": {"name": "x"}}),
            ("activate_chat", {"session": sid, "chat": first}),
            ("delete_chat", {"session": sid, "chat": first}),
            ("pause_session", {"session": sid}),
            ("send_message", {"session": sid, "chat": second, "body": {"content": "x"}, "headers": key("c")}),
            ("send_to_active_chat", {"session": sid, "body": {"content": "x"}}),
            ("delete_session", {"session": sid}),
            ("update_chat", {"session": sid, "chat": first, "body": {"name": "x"}}),
            ("archive_session", {"session": sid}),
        ):
            expect(d.call(module, user=u, **kwargs), 409, "conflict")
    with d.faults("seed=1,write_conflict=1"):
        expect(d.call("update_session", user=u, session=sid, body={"name": "x"}), 409, "conflict")


def archived_in_the_model_call(d: Driver, user: str, sid: str) -> None:
    """A concurrent archive: the session item's status changed as its request would change it."""
    from chat_sessions import keys

    d.backend.update_item(
        TableName=d.world.table,
        Key=keys.session_key(user, sid),
        UpdateExpression="SET #status = :archived",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":archived": "archived"},
    )


def archived_sessions(d: Driver) -> None:
    """Archive (an active session, again: no change, a paused one); every write in an archived
    session refused (each read back after its refusal, or refused by the status read first);
    reads work; a reply whose session was archived while the model answered; unarchive (and
    of a session that is not archived); delete an archived session."""
    u = d.user()
    sid = session(d, u)
    first, second = chat(d, u, sid, "a"), chat(d, u, sid, "b")
    expect(d.call("send_message", user=u, session=sid, chat=second, body={"content": "hi"}), 201)
    paused = session(d, u, "p")
    expect(d.call("pause_session", user=u, session=paused), 200)
    assert expect(d.call("archive_session", user=u, session=paused), 200)["status"] == "archived"
    assert expect(d.call("archive_session", user=u, session=sid), 200)["status"] == "archived"
    expect(d.call("archive_session", user=u, session=sid), 200)
    expect(d.call("archive_session", user=u, session=MISSING), 404)
    where: dict[str, Any] = {"user": u, "session": sid}
    for module, kwargs in (
        ("update_session", {"body": {"name": "x"}}),
        ("pause_session", {}),
        ("resume_session", {}),
        ("create_chat", {"body": {"name": "x"}}),
        # keyed: a refusal looks the key up (a repeat whose first try landed before the archive)
        ("create_chat", {"body": {"name": "x"}, "headers": {"Idempotency-Key": "archived-chat-key-1"}}),
        ("update_chat", {"chat": first, "body": {"name": "x"}}),
        ("update_chat", {"chat": first, "body": {"model": "gpt-4o"}}),
        ("activate_chat", {"chat": first}),
        ("delete_chat", {"chat": first}),
        ("send_message", {"chat": second, "body": {"content": "x"}}),
        ("send_to_active_chat", {"body": {"content": "x"}}),
        ("regenerate", {"chat": second}),
    ):
        expect(d.call(module, **where, **kwargs), 409, "session_archived")
    expect(d.call("get_session", **where), 200)
    expect(d.call("list_messages", **where, chat=second), 200)
    assert expect(d.call("unarchive_session", **where), 200)["status"] == "paused"
    expect(d.call("unarchive_session", **where), 200)
    expect(d.call("unarchive_session", user=u, session=MISSING), 404)
    expect(d.call("resume_session", **where), 200)
    with d.at_model_call(lambda: archived_in_the_model_call(d, u, sid)):
        expect(d.call("send_message", **where, chat=second, body={"content": "x"}), 409, "session_archived")
    expect(d.call("delete_session", user=u, session=paused), 204)


def usage_and_budget(d: Driver) -> None:
    """GET /me/usage (a user with counts, one with none); with MONTHLY_TOKEN_BUDGET: a send and a
    regenerate within it, then both refused once it is reached (429, nothing stored)."""
    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    budget = {"MONTHLY_TOKEN_BUDGET": "1"}
    first = expect(d.call("send_message", env=budget, user=u, session=sid, chat=c, body={"content": "hi"}), 201)
    expect(d.call("get_usage", env=budget, user=u), 200)
    expect(d.call("get_usage", user=d.user()), 200)
    expect(d.call("send_message", env=budget, user=u, session=sid, chat=c, body={"content": "x"}), 429)
    expect(d.call("regenerate", env=budget, user=u, session=sid, chat=c), 429, "token_budget_exhausted")
    question = {"chat": c, "message": first["userMessage"]["messageId"], "body": {"content": "y"}}
    expect(d.call("edit_message", env=budget, user=u, session=sid, **question), 429, "token_budget_exhausted")
    expect(d.call("regenerate", env={"MONTHLY_TOKEN_BUDGET": "1000000"}, user=u, session=sid, chat=c), 201)
    # Within a budget, the budget's ConditionCheck of a send to the active chat and of an edit's send.
    within = {"MONTHLY_TOKEN_BUDGET": "1000000"}
    expect(d.call("send_to_active_chat", env=within, user=u, session=sid, body={"content": "z"}), 201)
    expect(d.call("edit_message", env=within, user=u, session=sid, **question), 201)


def unprocessed_batches(d: Driver) -> None:
    """Batches handed back in part, as a busy partition does: the exchange read back for a
    repeat, and a delete's purge, ask again for the rest. Whether a batch is handed back is
    drawn per request, so each is repeated (a repeat, another small session) until one was."""
    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    k = key("batch")
    expect(d.call("send_message", user=u, session=sid, chat=c, body={"content": "hi"}, headers=k), 201)
    with d.faults("seed=3,unprocessed=0.3"):
        for _ in range(20):
            expect(d.call("send_message", user=u, session=sid, chat=c, body={"content": "hi"}, headers=k), 201)
            if d.injected("unprocessed", "BatchGetItem"):
                break
        for _ in range(20):
            sid = session(d, u)
            chat(d, u, sid)  # the chat and its head: two items to purge
            expect(d.call("delete_session", user=u, session=sid), 204)
            if d.injected("unprocessed", "BatchWriteItem"):
                break
    assert d.injected("unprocessed", "BatchGetItem") and d.injected("unprocessed", "BatchWriteItem")


def stream_removals(d: Driver) -> None:
    """The stream consumer finishes the purge of a session and of a chat whose DELETE died after
    its first step, ignores a removal that owns nothing, and takes a session removed by TTL off
    the user's counters once."""
    from boto3.dynamodb.types import TypeSerializer

    from chat_sessions import keys

    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    expect(d.call("send_message", user=u, session=sid, chat=c, body={"content": "hi"}), 201)
    for item_key in (keys.chat_key(u, sid, c), keys.session_key(u, sid)):
        d.backend.delete_item(TableName=d.world.table, Key=dict(item_key))
        assert d.stream(item_key["PK"], item_key["SK"]) == {"batchItemFailures": []}
    assert d.stream(keys.idempotency_pk(u), "POST /sessions#abc") == {"batchItemFailures": []}
    # A session removed by retention (DynamoDB's TTL): taken off the counters, then its record
    # delivered again (the receipt refuses the second count).
    expired = session(d, u)
    expired_key = keys.session_key(u, expired)
    old = d.backend.delete_item(TableName=d.world.table, Key=dict(expired_key), ReturnValues="ALL_OLD")["Attributes"]
    wire = {name: TypeSerializer().serialize(value) for name, value in old.items()}
    for _ in range(2):
        assert d.stream(expired_key["PK"], expired_key["SK"], wire) == {"batchItemFailures": []}


def domain_events(d: Driver) -> None:
    """The events publisher with a stream batch (events/): its events go on the bus (moto's
    EventBridge), in one PutEvents; it reads nothing of the table."""
    from chat_sessions import events

    events.events_client.cache_clear()  # a cold start: the client is made in this world
    event = copy.deepcopy(load_event("publish_events"))
    handler = importlib.import_module("publish_events").lambda_handler
    assert d._run("publish_events", None, lambda: handler(event, LambdaContext())) == {"batchItemFailures": []}


def branches(d: Driver) -> None:
    """Forks (at 0, within the history, past it, of a missing chat; of a fork; at an unanswered
    question, which is copied), a fork's listing by pages both ways, a send and regenerates in
    forks (one whose thread read holds only a shared reply: the question is looked up in the
    source's range), edits (a user message, a reply, an id naming no message, a paused session),
    keyed forks and edits, an edit whose fork landed but whose answer was lost for good (and one
    whose model failed, and one whose reply's answer was lost), then the source deleted while a
    fork shares its messages, deleted again (its head says what to keep), and the stream
    consumer's purge of it."""
    u = d.user()
    sid = session(d, u)
    src = chat(d, u, sid, "source")
    for text in ("one", "two"):
        expect(d.call("send_message", user=u, session=sid, chat=src, body={"content": text}), 201)

    def fork(source: str, upto: int, status: int = 201, **kwargs: Any) -> Any:
        return expect(d.call("fork_chat", user=u, session=sid, chat=source, body={"uptoSeq": upto}, **kwargs), status)

    mid = fork(src, 3)["chatId"]
    expect(d.call("send_message", user=u, session=sid, chat=mid, body={"content": "three"}), 201)
    fork(src, 0)
    fork(src, 99, 400)
    fork(MISSING, 1, 404)
    deep = fork(mid, 5)["chatId"]
    for order in ("asc", "desc"):
        query = {"limit": "2", "order": order}
        page = expect(d.call("list_messages", user=u, session=sid, chat=deep, query=query), 200)
        query = {**query, "cursor": page["nextCursor"]}
        expect(d.call("list_messages", user=u, session=sid, chat=deep, query=query), 200)
    replies = fork(src, 4)["chatId"]  # ends at a reply: a window of one message holds no question
    expect(d.call("regenerate", user=u, session=sid, chat=replies, env={"CONTEXT_MAX_MESSAGES": "1"}), 201)
    d.model.script = [Reply(status=500)]
    expect(d.call("send_message", user=u, session=sid, chat=replies, body={"content": "lost"}), 502)
    open_question = fork(replies, 5)["chatId"]  # copies the unanswered question
    expect(d.call("regenerate", user=u, session=sid, chat=open_question), 201)

    listed = expect(d.call("list_messages", user=u, session=sid, chat=src), 200)["items"]
    question, answer = listed[0], listed[1]

    def edit(message: str, status: int, headers: dict[str, str] | None = None) -> Any:
        where: dict[str, Any] = {"user": u, "session": sid, "chat": src, "message": message}
        return expect(d.call("edit_message", **where, body={"content": "edited"}, headers=headers), status)

    edit(question["messageId"], 201)
    edit(answer["messageId"], 400)
    edit(MISSING, 404)
    keyed(
        d,
        "fork_chat",
        201,
        {"user": u, "session": sid, "chat": src, "body": {"uptoSeq": 2}},
        {"user": u, "session": sid, "chat": src, "body": {"uptoSeq": 1}},
        {"user": u, "session": sid, "chat": src, "body": {"uptoSeq": 99}},
        400,
    )
    where = {"user": u, "session": sid, "chat": src, "message": question["messageId"]}
    keyed(
        d,
        "edit_message",
        201,
        {**where, "body": {"content": "k"}},
        {**where, "body": {"content": "other"}},
        {**where, "message": answer["messageId"], "body": {"content": "k"}},
        400,
    )
    k = key("edit-fork-lost")  # the fork commits, its answer is lost for good: the repeat sends
    with d.faults("seed=1,lost=1,lost_retries=1"):
        edit(question["messageId"], 503, headers=k)
    edit(question["messageId"], 201, headers=k)
    k = key("edit-model-failed")  # fork and question stored, the model fails: the repeat answers
    d.model.script = [Reply(status=500)]
    edit(question["messageId"], 502, headers=k)
    edit(question["messageId"], 201, headers=k)
    k = key("edit-reply-lost")  # the reply commits, its answer is lost for good: the repeat reads it
    with d.faults_from_model_call("seed=1,lost=1,lost_retries=1"):
        edit(question["messageId"], 503, headers=k)
    edit(question["messageId"], 201, headers=k)
    expect(d.call("pause_session", user=u, session=sid), 200)
    edit(question["messageId"], 409, headers=key("paused"))
    expect(d.call("resume_session", user=u, session=sid), 200)

    from chat_sessions import keys

    expect(d.call("delete_chat", user=u, session=sid, chat=src), 204)
    expect(d.call("delete_chat", user=u, session=sid, chat=src), 404)
    item_key = keys.chat_key(u, sid, src)
    assert d.stream(item_key["PK"], item_key["SK"]) == {"batchItemFailures": []}
    assert expect(d.call("list_messages", user=u, session=sid, chat=mid), 200)["items"]


def websocket_push(d: Driver) -> None:
    """Connections: connect, subscribe to a chat of the caller's (and to another user's: refused,
    and after ``$disconnect``: refused), a stored message pushed to the chat's subscribers by the
    stream consumer (one connection gone: its subscription forgotten), then disconnect."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core.exceptions import JsonRESTError

    from chat_sessions import keys, push

    class Gone(JsonRESTError):
        code = 410

    management = apigatewaymanagementapi_backends[ACCOUNT][REGION]
    posted: list[str] = []

    def post(data: bytes, connection_id: str) -> None:
        if "gone" in connection_id:
            raise Gone("GoneException", "the connection is gone")
        posted.append(connection_id)

    # An attribute of the instance, removed by hand: moto resets its backends when a nested
    # mock ends (which drops it), so MonkeyPatch's undo could find nothing to remove.
    management.post_to_connection = post  # type: ignore[method-assign]
    try:
        push._subscribers_cache.clear()
        u, other = d.user(), d.user()
        sid, osid = session(d, u), session(d, other)
        c, oc = chat(d, u, sid), chat(d, other, osid)
        for connection in ("lp-live=", "lp-gone=", "lp-closed="):
            assert d.websocket("ws_connect", u, connection) == {"statusCode": 200}
            if connection != "lp-closed=":
                frame = d.websocket(
                    "ws_subscribe", u, connection, {"action": "subscribe", "sessionId": sid, "chatId": c}
                )
                assert frame["type"] == "subscribed", frame
        frame = d.websocket("ws_subscribe", u, "lp-live=", {"action": "subscribe", "sessionId": osid, "chatId": oc})
        assert frame["code"] == "not_found", frame
        d.websocket("ws_disconnect", u, "lp-closed=")
        frame = d.websocket("ws_subscribe", u, "lp-closed=", {"action": "subscribe", "sessionId": sid, "chatId": c})
        assert frame["code"] == "connection_closed", frame
        event = copy.deepcopy(load_event("push_messages"))
        image = event["Records"][0]["dynamodb"]["NewImage"]
        key = keys.message_key(u, sid, c, 2)
        image.update({"PK": {"S": key["PK"]}, "SK": {"S": key["SK"]}, "sessionId": {"S": sid}, "chatId": {"S": c}})
        event["Records"][0]["dynamodb"]["Keys"] = {"PK": image["PK"], "SK": image["SK"]}
        assert d.push(event) == {"batchItemFailures": []}
        assert [unquote(p) for p in posted] == ["lp-live="]
        assert d.websocket("ws_disconnect", u, "lp-live=") == {"statusCode": 200}
    finally:
        vars(management).pop("post_to_connection", None)


def generate(d: Driver, event: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    """The generating function with an event a send or regenerate handed to the Lambda service."""
    handler = importlib.import_module("generate_reply").lambda_handler
    return d._run("generate_reply", env, lambda: handler(event, LambdaContext(remaining_millis=300_000)))["outcome"]


def async_replies(d: Driver) -> None:
    """Prefer: respond-async (send, send to the active chat, regenerate), the generation to the
    end, a duplicate delivery, the model failing midway, reads and long polls, cancel (generating,
    not generating, missing), the lease refusing sends, an invocation that could not be handed
    over, and a dead generation's lease taken over."""
    from tests.lambda_service import lambda_service

    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    prefer = {"Prefer": "respond-async"}
    with lambda_service() as lam:
        env = {"AWS_ENDPOINT_URL_LAMBDA": lam.url}
        where: dict[str, Any] = {"user": u, "session": sid, "chat": c}
        sent = expect(d.call("send_message", **where, body={"content": "q1"}, headers=prefer, env=env), 202)
        reply = sent["assistantMessage"]
        expect(d.call("send_message", **where, body={"content": "q2"}), 409, "reply_in_progress")
        # Keyed, the refusal first looks for the key's marker (a repeat whose first try committed).
        keyed = d.call("send_message", **where, body={"content": "q2"}, headers=key("while-generating"))
        expect(keyed, 409, "reply_in_progress")
        expect(d.call("send_message", **where, body={"content": "q2"}, headers=prefer, env=env), 409)
        expect(d.call("regenerate", **where), 409, "reply_in_progress")
        expect(d.call("regenerate", **where, headers=prefer, env=env), 409, "reply_in_progress")
        got = d.call("get_message", **where, message=reply["messageId"], query={"wait": "1", "after": "0"})
        assert expect(got, 200)["status"] == "generating"
        (event,) = lam.events("chat-sessions-GenerateReplyFunction")
        assert generate(d, event, {"REPLY_FLUSH_SECONDS": "0"}) == "complete"  # each piece stored
        assert generate(d, event) == "duplicate"  # Lambda delivered it twice
        expect(d.call("get_message", **where, message=reply["messageId"], query={}), 200)
        expect(d.call("get_message", **where, message=MISSING, query={}), 404)
        expect(d.call("cancel_message", **where, message=reply["messageId"]), 409, "not_generating")
        expect(d.call("cancel_message", **where, message=MISSING), 404)
        regenerated = expect(d.call("regenerate", **where, headers=prefer, env=env), 202)["assistantMessage"]
        expect(d.call("cancel_message", **where, message=regenerated["messageId"]), 200)
        assert (
            generate(d, lam.events("chat-sessions-GenerateReplyFunction")[-1]) == "duplicate"
        )  # cancelled before it ran
        expect(d.call("send_to_active_chat", user=u, session=sid, body={"content": "q3"}, headers=prefer, env=env), 202)
        d.model.script = [Reply(content="one two three four", break_after=2)]
        assert generate(d, lam.events("chat-sessions-GenerateReplyFunction")[-1]) == "failed"
        # A generation cancelled while it runs stops at its next write of the content.
        expect(d.call("regenerate", **where, headers=prefer, env=env), 202)
        with d.at_model_call(lambda: cancel_newest(d, u, sid, c)):
            d.model.script = [Reply(content=" ".join(["word"] * 40), delay=0)]
            assert (
                generate(d, lam.events("chat-sessions-GenerateReplyFunction")[-1], {"REPLY_FLUSH_SECONDS": "0"})
                == "stopped"
            )
        # The question answered meanwhile (its status is a condition of the end): read again, counted once.
        expect(d.call("send_message", **where, body={"content": "q7"}, headers=prefer, env=env), 202)
        with d.at_model_call(lambda: answer_question(d, u, sid, c)):
            assert generate(d, lam.events("chat-sessions-GenerateReplyFunction")[-1]) == "complete"
    # The Lambda service unreachable: the reply is stored failed, the request answers 503.
    closed = {"AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9"}
    expect(d.call("send_message", **where, body={"content": "q4"}, headers=prefer, env=closed), 503, "unavailable")
    # A generation that died: once its lease has run out, the next reply takes the chat over.
    short = {"AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9", "GENERATION_TIMEOUT_SECONDS": "0.5"}
    with lambda_service() as lam:
        short["AWS_ENDPOINT_URL_LAMBDA"] = lam.url
        short["REPLY_LEASE_MARGIN_SECONDS"] = "0"
        expect(d.call("send_message", **where, body={"content": "q5"}, headers=prefer, env=short), 202)
        lease_runs_out(d, u, sid, c)
        expect(d.call("send_message", **where, body={"content": "q6"}, headers=prefer, env=short), 202)
        lease_runs_out(d, u, sid, c)
        # A sync send, then a sync regenerate, after a dead reply: each stores it failed.
        expect(d.call("send_message", **where, body={"content": "q6b"}, env=short), 201)
        expect(d.call("regenerate", **where, headers=prefer, env=short), 202)
        lease_runs_out(d, u, sid, c)
        expect(d.call("regenerate", **where, env=short), 201)
        expect(d.call("regenerate", **where, headers=prefer, env=short), 202)
        # An edit, asked the same: its fork's send stores the reply generating.
        edit = {**where, "message": sent["userMessage"]["messageId"], "body": {"content": "edited"}}
        expect(d.call("edit_message", **edit, headers=prefer, env=short), 202)


def cancel_newest(d: Driver, user: str, sid: str, chat_id: str) -> None:
    """Cancel the chat's newest message, as another request would (past the recording)."""
    from chat_sessions import keys

    newest = newest_message(d, user, sid, chat_id)
    d.backend.update_item(
        TableName=d.world.table,
        Key=dict(keys.message_key(user, sid, chat_id, newest.seq)),
        UpdateExpression="SET #s = :c REMOVE leaseUntil",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": "cancelled"},
    )
    d.backend.update_item(
        TableName=d.world.table,
        Key=dict(keys.head_key(user, sid, chat_id)),
        UpdateExpression="REMOVE generatingSeq, leaseUntil",
    )


def answer_question(d: Driver, user: str, sid: str, chat_id: str) -> None:
    """The question of the chat's newest reply turns complete, as if answered meanwhile."""
    from chat_sessions import keys

    newest = newest_message(d, user, sid, chat_id)
    d.backend.update_item(
        TableName=d.world.table,
        Key=dict(keys.message_key(user, sid, chat_id, newest.reply_to_seq)),
        UpdateExpression="SET #s = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": "complete"},
    )


def lease_runs_out(d: Driver, user: str, sid: str, chat_id: str) -> None:
    """Wait (a second at most) until the chat's lease has passed: time passing is what is tested."""
    import time

    from chat_sessions import keys

    head = d.backend.get_item(TableName=d.world.table, Key=dict(keys.head_key(user, sid, chat_id)), ConsistentRead=True)
    until = int(head["Item"]["leaseUntil"])
    assert until <= time.time() + 2
    while int(time.time()) <= until:  # leases count whole seconds
        time.sleep(0.05)


def pushed_deltas(d: Driver) -> None:
    """A reply generated on its own with two WebSocket subscribers: its deltas are posted to the
    live one; the gone one (GoneException) has its subscription forgotten."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core.exceptions import JsonRESTError

    from chat_sessions import push
    from tests.lambda_service import lambda_service

    class Gone(JsonRESTError):
        code = 410

    management = apigatewaymanagementapi_backends[ACCOUNT][REGION]
    posted: list[str] = []

    def post(data: bytes, connection_id: str) -> None:
        if "gone" in connection_id:
            raise Gone("GoneException", "the connection is gone")
        posted.append(unquote(connection_id))

    push._subscribers_cache.clear()
    u = d.user()
    sid = session(d, u)
    c = chat(d, u, sid)
    for connection in ("lp-deltas=", "lp-deltas-gone="):
        d.websocket("ws_connect", u, connection)
        subscribe = {"action": "subscribe", "sessionId": sid, "chatId": c}
        assert d.websocket("ws_subscribe", u, connection, subscribe)["type"] == "subscribed"
    d.model.script = [Reply(content="one two three four")]
    # An attribute of the instance, removed by hand: the Lambda service's exit resets moto's
    # backends (which drops it), so MonkeyPatch's undo would find nothing to remove.
    management.post_to_connection = post  # type: ignore[method-assign]
    try:
        with lambda_service() as lam:
            env = {"AWS_ENDPOINT_URL_LAMBDA": lam.url}
            where: dict[str, Any] = {"user": u, "session": sid, "chat": c}
            prefer = {"Prefer": "respond-async"}
            expect(d.call("send_message", **where, body={"content": "q"}, headers=prefer, env=env), 202)
            assert generate(d, lam.events("chat-sessions-GenerateReplyFunction")[-1]) == "complete"
    finally:
        vars(management).pop("post_to_connection", None)
    assert posted and set(posted) == {"lp-deltas="}, posted


def erase(d: Driver, user: str) -> Any:
    """The erasure consumer with the stream record of ``user``'s marker (its keys are all it reads)."""
    from chat_sessions import keys

    event = copy.deepcopy(load_event("erase_user"))
    marker = keys.quota_key(user)
    event["Records"][0]["dynamodb"]["Keys"] = {"PK": {"S": marker["PK"]}, "SK": {"S": marker["SK"]}}
    handler = importlib.import_module("erase_user").lambda_handler
    return d._run("erase_user", None, lambda: handler(event, LambdaContext()))


def erasure(d: Driver) -> None:
    """DELETE /me, a create refused while the erasure runs, then the erasure's steps as the
    stream invokes them, two items a step: steps that hand over, and the last, which deletes
    the marker; a repeat after the end, and a step with no erasure to do."""
    from chat_sessions import keys
    from chat_sessions.services import erasure as erasing

    u = d.user()
    chat(d, u, session(d, u, "e"))  # and a keyed one: the world's limit is 2 active sessions
    expect(d.call("create_session", user=u, body={"name": "k"}, headers=key("erase-keyed")), 201)
    expect(d.call("erase_me", user=u), 202)
    expect(d.call("create_session", user=u, body={"name": "x"}), 409, "erasure_in_progress")
    d.monkeypatch.setattr(erasing, "STEP_ITEMS", 2)
    for _ in range(50):
        assert erase(d, u) == {"batchItemFailures": []}
        if "Item" not in d.backend.get_item(TableName=d.world.table, Key=dict(keys.quota_key(u)), ConsistentRead=True):
            break
    else:
        raise AssertionError("the erasure did not end")
    expect(d.call("erase_me", user=u), 202)
    assert erase(d, u) == {"batchItemFailures": []}  # ends at once: nothing left
    assert erase(d, u) == {"batchItemFailures": []}  # no erasure to do
    expect(d.call("create_session", user=u, body={"name": "back"}), 201)


SCENARIOS: list[Callable[[Driver], None]] = [
    sessions_and_quota,
    sessions_listed_and_deleted,
    chats,
    messages,
    sending_to_the_active_chat,
    idempotency_keys,
    lost_answers,
    committed_but_answered_503,
    raced_replies,
    collisions,
    archived_sessions,
    usage_and_budget,
    unprocessed_batches,
    stream_removals,
    domain_events,
    branches,
    async_replies,
    websocket_push,
    pushed_deltas,
    erasure,
]


# --- the world -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    world: World
    calls: list[AwsCall]
    parameter_key: str
    model_authorizations: list[str]

    def needs(self, module: str, customer_key: bool) -> dict[Grant, AwsCall]:
        """Each (action, resource) the function needed, with the first call that needed it."""
        out: dict[Grant, AwsCall] = {}
        for call in self.calls:
            if call.module == module:
                for pair in needed(call, self.parameter_key if customer_key else None):
                    out.setdefault(pair, call)
        return out


@pytest.fixture(scope="module")
def observed(dynamodb_endpoint: str) -> Observed:
    """Drive every scenario once, in a world of its own, and keep what each function called.
    Nothing of the world (environment, hooks, fault injector, cached clients) outlives it."""
    from moto import mock_aws

    from chat_sessions.services import retry

    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws(), upstream() as model:
        monkeypatch.setattr(retry, "ATTEMPTS", 3)  # contention outlasts 3 tries as well as 30
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        # One loader for every botocore session the world creates: the service models are parsed
        # once, not at each cold start (which would change no call, and cost a second each).
        monkeypatch.setattr(botocore.session, "create_loader", functools.lru_cache(maxsize=None)(create_loader))
        monkeypatch.delenv("OPENAI_API_KEY")  # deployed, the key is in SSM only
        table = f"chat-sessions-lp-{uuid.uuid4().hex[:12]}"
        backend: Any = boto3.resource("dynamodb", endpoint_url=dynamodb_endpoint, region_name=REGION).meta.client
        ensure_table(backend, table)
        kms_key = boto3.client("kms", region_name=REGION).create_key(Description="model key parameter")
        parameter_key = kms_key["KeyMetadata"]["Arn"]
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=PARAMETER_NAME, Value=MODEL_KEY, Type="SecureString", KeyId=parameter_key
        )
        secrets: Any = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = secrets.create_secret(Name="cursor-signing-key", SecretString=uuid.uuid4().hex * 2)["ARN"]
        boto3.client("events", region_name=REGION).create_event_bus(Name=EVENT_BUS)
        injector = FaultInjector(dynamodb_endpoint, parse_spec(FAULTS_OFF) or _never()).start()
        monkeypatch.setenv("DYNAMODB_ENDPOINT", injector.url)
        world = World(table=table, secret_arn=secret_arn, kms_key_arn=parameter_key, model_url=model.base_url)
        recorder = Recorder()
        try:
            with recording(recorder):
                driver = Driver(world, recorder, injector, monkeypatch, model, backend)
                for scenario in SCENARIOS:
                    recorder.scenario = scenario.__name__
                    scenario(driver)
        finally:
            injector.shutdown()
            fresh_clients()
        result = Observed(world, list(recorder.calls), parameter_key, list(model.authorizations))
    fresh_clients()
    return result


def _never() -> Any:
    raise AssertionError(f"{FAULTS_OFF} is a valid spec")


# --- the checks ----------------------------------------------------------------------------------


def test_every_function_was_driven(observed: Observed) -> None:
    """A function left out would be compared against nothing."""
    assert {call.module for call in observed.calls} == set(FUNCTIONS) - NO_AWS_CALLS


def test_every_request_site_in_the_code_was_driven(observed: Observed) -> None:
    """The derived sets are only as complete as the paths driven: each place in the store and
    the services that can send a DynamoDB request must have sent one in some scenario. (A new
    store method or service branch fails here until a scenario reaches it.)"""
    executed = {frame for call in observed.calls for frame in call.stack}
    sites = request_sites()
    assert len(sites) > 40, "the site finder found too little to be right"
    missed = [
        str(site)
        for site in sites
        if not any((site.path, line) in executed for line in range(site.first, site.last + 1))
    ]
    assert missed == [], "\n".join(missed)


def test_the_secrets_were_read_the_deployed_way(observed: Observed) -> None:
    """The model key came from the SSM parameter (no key in the environment), and the cursors
    were signed with the Secrets Manager secret: the calls compared below are the deployed ones."""
    assert observed.model_authorizations, "no model call"
    assert set(observed.model_authorizations) == {f"Bearer {MODEL_KEY}"}
    reads = {(c.module, c.operation) for c in observed.calls if c.service in ("ssm", "secretsmanager")}
    assert reads == {
        *((m, "GetParameter") for m in ("send_message", "send_to_active_chat", "regenerate", "edit_message")),
        ("generate_reply", "GetParameter"),
        *((m, "GetSecretValue") for m in ("list_sessions", "list_chats", "list_messages")),
    }


@pytest.mark.parametrize("customer_key", [True, False], ids=["customer-managed-key", "aws-managed-key"])
@pytest.mark.parametrize("module", sorted(FUNCTIONS))
def test_the_policy_grants_exactly_what_the_function_calls(observed: Observed, module: str, customer_key: bool) -> None:
    """Nothing missing (an AccessDenied waiting on some path), nothing extra (privilege no path
    uses), each on the exact resource called: the table, the parameter, the secret, the key."""
    needs = observed.needs(module, customer_key)
    grants = granted(module, observed.world, customer_key)
    missing = {f"{a} on {r} (first: {call})" for (a, r), call in needs.items() if (a, r) not in grants}
    extra = grants - set(needs)
    assert not missing and not extra, f"{module}: missing {sorted(missing)}; granted but never called {sorted(extra)}"


def test_no_policy_template_hides_a_grant() -> None:
    """SAM policy templates (DynamoDBCrudPolicy and the like) would grant actions the check
    above does not see: only the stream consumer's dead-letter queue policy is allowed."""
    for module in FUNCTIONS:
        for customer_key in (True, False):
            names = {
                name
                for policy in policies(module, customer_key)
                if isinstance(policy, dict) and "Statement" not in policy
                for name in policy
            }
            assert names == ALLOWED_POLICY_TEMPLATES.get(module, set()), module
            strings = [p for p in policies(module, customer_key) if not isinstance(p, dict)]
            assert strings == [], f"{module}: managed policies {strings}"


def test_a_customer_managed_key_is_optional_and_used_through_ssm_only() -> None:
    """Defect 13: a SecureString under a customer-managed KMS key needs ``kms:Decrypt``; the key
    is a template parameter, and without it (the AWS-managed key, which needs no grant) the
    statement is left out. The condition's own shape is checked here; which functions carry it
    and on which resource is the exact comparison's."""
    assert TEMPLATE["Parameters"]["OpenAIApiKeyKmsKeyArn"]["Default"] == ""
    assert TEMPLATE["Conditions"][KMS_CONDITION] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OpenAIApiKeyKmsKeyArn"}, ""]}]
    }


def test_the_cursor_key_is_a_generated_secret() -> None:
    """Defect 12: cursors are signed with a key that is in no code, event or environment value:
    the template generates it in Secrets Manager and hands its ARN only to the functions that
    issue and check cursors (which may read it, by ARN: the exact comparison)."""
    secret = TEMPLATE["Resources"]["CursorSigningKey"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["PasswordLength"] >= 32 and generate["ExcludePunctuation"] is True
    holders = {
        m
        for m, r in FUNCTIONS.items()
        if "CURSOR_KEY_SECRET" in r["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert holders == {"list_sessions", "list_chats", "list_messages"}
    for module in holders:
        variables = FUNCTIONS[module]["Properties"]["Environment"]["Variables"]
        assert variables["CURSOR_KEY_SECRET"] == {"Ref": "CursorSigningKey"}


def test_the_recorded_calls_name_only_this_worlds_resources(observed: Observed) -> None:
    """The calls went to the table (and its one index, ``ByStatus``, which only the session
    listing reads), parameter and secret the template's references name (so the ARNs compared
    above are the deployed ones), never to another index or table."""
    for call in observed.calls:
        for _, resource in needed(call, observed.parameter_key):
            assert resource in {
                observed.world.table_arn,
                f"{observed.world.table_arn}/index/ByStatus",
                parameter_arn(PARAMETER_NAME),
                observed.world.secret_arn,
                observed.parameter_key,
                event_bus_arn(EVENT_BUS),
                MANAGE_CONNECTIONS[1],
                function_arn("chat-sessions-GenerateReplyFunction"),
            }, call
            assert "/index/" not in resource or call.module == "list_sessions", call
