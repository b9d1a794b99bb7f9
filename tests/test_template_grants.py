"""What the template grants against what the code does (issue 8, defects 12 and 13).

moto allows every call, so a missing grant shows only when deployed (``AccessDenied``, a 500).
Here the DynamoDB calls a handler really makes, through ``invoke`` against moto, are mapped to
the IAM actions they need and compared with the function's policy in ``template.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.meter import DynamoMeter
from local_stack.template import functions, load
from tests.support import invoke
from tests.upstream import Upstream

TEMPLATE = load()

# The IAM action each DynamoDB API call needs (a transaction needs the item-level actions).
ACTIONS_OF_CALL = {
    "GetItem": {"dynamodb:GetItem"},
    "TransactGetItems": {"dynamodb:GetItem"},
    "Query": {"dynamodb:Query"},
    "PutItem": {"dynamodb:PutItem"},
    "UpdateItem": {"dynamodb:UpdateItem"},
    "DeleteItem": {"dynamodb:DeleteItem"},
    "BatchWriteItem": {"dynamodb:BatchWriteItem"},
    # The only transaction a PATCH makes (model or systemPrompt: the chat and its head) updates.
    "TransactWriteItems": {"dynamodb:UpdateItem"},
}


def _function(module: str) -> dict[str, Any]:
    (resource,) = [r for r in functions(TEMPLATE).values() if r["Properties"]["Handler"] == f"{module}.lambda_handler"]
    return resource


def _statements(resource: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for policy in resource["Properties"].get("Policies", []):
        if isinstance(policy, dict):
            out += policy.get("Statement", [])
    return out


def _granted(module: str) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(_function(module)):
        if isinstance(statement, dict) and "Action" in statement:
            listed = statement["Action"]
            actions |= {listed} if isinstance(listed, str) else set(listed)
    return {a for a in actions if a.startswith("dynamodb:")}


@pytest.fixture
def meter(table: str, model: Upstream) -> Iterator[DynamoMeter]:
    """Attached after ``model``, whose set-up drops the cached clients."""
    from chat_sessions import store

    meter = DynamoMeter().attach(store.dynamodb_client()).attach(store.plain_dynamodb_client())
    yield meter
    meter.detach()


@pytest.mark.parametrize(
    ("module", "body"),
    [
        ("update_session", {}),
        ("update_session", {"name": "renamed"}),
        ("update_chat", {}),
        ("update_chat", {"systemPrompt": None}),
    ],
)
def test_patch_is_granted_every_call_it_makes(
    module: str, body: dict[str, Any], meter: DynamoMeter, model: Upstream
) -> None:
    """Defect 13: an empty PATCH reads the resource with GetItem, which was not granted."""
    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"]
    meter.reset()
    result = invoke(module, session=sid, chat=chat, body=body)
    assert result.status == 200, result
    needed = set().union(*(ACTIONS_OF_CALL[op] for op in meter.take().operations))
    assert needed, "the PATCH made no DynamoDB call"
    assert needed <= _granted(module), (module, needed - _granted(module))


def test_patch_functions_are_granted_only_what_they_use() -> None:
    """Least privilege: a read for the empty PATCH, a conditional update otherwise."""
    for module in ("update_session", "update_chat"):
        assert _granted(module) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}, module


def _model_functions() -> list[dict[str, Any]]:
    return [r for r in functions(TEMPLATE).values() if "OPENAI_API_KEY_PARAMETER" in str(r["Properties"])]


def test_a_customer_managed_key_on_the_model_key_parameter_can_be_decrypted() -> None:
    """Defect 13: a SecureString under a customer-managed KMS key needs ``kms:Decrypt`` as well
    as ``ssm:GetParameter``. The key is a template parameter; without it (the AWS-managed key,
    which needs no grant) the statement is left out."""
    params = TEMPLATE["Parameters"]
    assert params["OpenAIApiKeyKmsKeyArn"]["Default"] == ""
    condition = TEMPLATE["Conditions"]["HasOpenAIApiKeyKmsKey"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OpenAIApiKeyKmsKeyArn"}, ""]}]}
    model_functions = _model_functions()
    assert len(model_functions) == 3
    for resource in model_functions:
        conditional = [p for p in resource["Properties"]["Policies"] if isinstance(p, dict) and "Fn::If" in p]
        assert len(conditional) == 1, resource["Properties"]["Handler"]
        name, policy, otherwise = conditional[0]["Fn::If"]
        assert name == "HasOpenAIApiKeyKmsKey" and otherwise == {"Ref": "AWS::NoValue"}
        (statement,) = policy["Statement"]
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == {"Ref": "OpenAIApiKeyKmsKeyArn"}
        assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
            "Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"
        }
    for resource in functions(TEMPLATE).values():
        if resource not in model_functions:
            assert "kms:" not in str(resource["Properties"].get("Policies", [])), resource["Properties"]["Handler"]


LIST_FUNCTIONS = {"list_sessions", "list_chats", "list_messages"}


def test_the_cursor_key_is_a_generated_secret_read_only_by_the_list_functions() -> None:
    """Defect 12: cursors are signed with a key that is in no code, event or environment value:
    the template generates it in Secrets Manager, and only the functions that issue and read
    cursors may read it (by ARN, one action)."""
    secret = TEMPLATE["Resources"]["CursorSigningKey"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["PasswordLength"] >= 32 and generate["ExcludePunctuation"] is True
    for resource in functions(TEMPLATE).values():
        module = resource["Properties"]["Handler"].split(".")[0]
        reads = [s for s in _statements(resource) if isinstance(s, dict) and "secretsmanager" in str(s.get("Action"))]
        env = resource["Properties"].get("Environment", {}).get("Variables", {})
        if module in LIST_FUNCTIONS:
            assert reads == [
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": "CursorSigningKey"}}
            ], module
            assert env["CURSOR_KEY_SECRET"] == {"Ref": "CursorSigningKey"}
        else:
            assert reads == [] and "CURSOR_KEY_SECRET" not in env, module
