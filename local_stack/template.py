"""Reads ``template.yaml``: the single source of truth for routes, handlers and the table.

The local stack and the tests both take the table definition and the routes from here, so
neither can drift from what ``sam deploy`` creates.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML with CloudFormation's short-form intrinsics (``!Ref``, ``!GetAtt``, ``!Sub``...).

    On libyaml's parser where PyYAML has it (its wheels do): the same documents, 9 times less
    CPU (9 ms for template.yaml instead of 82). A stack's start read the template a dozen times,
    about a second of its CPU, and the tests start 27 stacks."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    module: str
    handler: str
    code_dir: Path


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as f:
        data: dict[str, Any] = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return data


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == "AWS::Serverless::Function"}


def routes(template: dict[str, Any] | None = None) -> list[Route]:
    template = template or load()
    global_code = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    found = []
    for name, res in functions(template).items():
        props = res["Properties"]
        module, handler = props["Handler"].rsplit(".", 1)
        code_dir = ROOT / props.get("CodeUri", global_code)
        for event in props.get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            found.append(
                Route(
                    event["Properties"]["Method"].upper(), event["Properties"]["Path"], name, module, handler, code_dir
                )
            )
    return found


def layer_dirs(template: dict[str, Any] | None = None) -> list[Path]:
    """Where each layer's Python code lives, as Lambda will see it under ``/opt/python``: a layer
    that ``sam build`` builds (``BuildMethod: python3.x``) has its ContentUri copied there; a
    prebuilt one is zipped as is, so its code sits in ``<ContentUri>/python``."""
    template = template or load()
    dirs = []
    for res in template["Resources"].values():
        if res["Type"] != "AWS::Serverless::LayerVersion":
            continue
        content = ROOT / res["Properties"]["ContentUri"]
        built = str(res.get("Metadata", {}).get("BuildMethod", "")).startswith("python")
        dirs.append(content if built else content / "python")
    return dirs


def table_definition(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """``CreateTable`` arguments for the table, from its ``AWS::DynamoDB::Table`` resource."""
    template = template or load()
    (props,) = [res["Properties"] for res in template["Resources"].values() if res["Type"] == "AWS::DynamoDB::Table"]
    definition: dict[str, Any] = {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for indexes in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(indexes):
            definition[indexes] = props[indexes]
    return definition


def ttl_attribute(template: dict[str, Any] | None = None) -> str | None:
    template = template or load()
    for res in template["Resources"].values():
        if res["Type"] == "AWS::DynamoDB::Table":
            spec = res["Properties"].get("TimeToLiveSpecification")
            return spec["AttributeName"] if spec and spec.get("Enabled") else None
    return None


def stream_specification(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The table's ``StreamSpecification`` as ``CreateTable``/``UpdateTable`` take it."""
    template = template or load()
    (props,) = [res["Properties"] for res in template["Resources"].values() if res["Type"] == "AWS::DynamoDB::Table"]
    view = props.get("StreamSpecification", {}).get("StreamViewType")
    return {"StreamEnabled": True, "StreamViewType": view} if view else {"StreamEnabled": False}


def ensure_table(client: Any, table_name: str, stream: bool = False) -> bool:
    """Create the table if it is missing; True when it was created. ``stream``: with the
    template's stream (the local stack reads it, ``local_stack.streams``); tests that do not
    consume the stream leave it off, since moto copies every stream record a table holds on each
    transaction."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    extra = {"StreamSpecification": stream_specification()} if stream else {}
    client.create_table(TableName=table_name, **table_definition(), **extra)
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = ttl_attribute()
    if ttl:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )
    return True


# --- each function's environment, as Lambda sets it -------------------------------------------

LOCAL_TABLE = "chat-sessions-local"
LOCAL_EVENT_BUS = "chat-sessions-local-events"

NOT_EMULATED = {
    "OpenAIApiKeyParameterName": "an SSM parameter name: locally the key is OPENAI_API_KEY (none for the local model)",
}
"""Parameters whose value names an AWS resource the local stack does not emulate: a variable
set from one is left out locally, so the code takes its local path instead of calling AWS."""


@dataclass(frozen=True)
class FunctionEnvironment:
    """A function's ``Environment`` from the template (``Globals`` then its own), evaluated for
    the local stack: parameters take their defaults, the table is the local one; what names a
    resource the local stack does not have (a Secrets Manager secret, an SSM parameter) is left
    out, with the reason."""

    variables: dict[str, str]
    left_out: dict[str, str]


class _NoLocalValue(Exception):
    pass


def _local_value(value: Any, template: dict[str, Any], table: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref" and isinstance(arg, str):
            return _ref(arg, template, table)
        if name == "Fn::Sub" and isinstance(arg, str):
            if any(_is_websocket_api(m.group(1), template) for m in re.finditer(r"\$\{([^}!]+)\}", arg)):
                return _local_websocket_endpoint()
            return re.sub(r"\$\{([^}!]+)\}", lambda m: _ref(m.group(1), template, table), arg)
    raise _NoLocalValue(f"{value!r} has no local value")


LOCAL_WEBSOCKET_ENDPOINT = "LOCAL_WEBSOCKET_ENDPOINT"
"""Set by the local gateway to its own URL: it serves the WebSocket API's management API
(``@connections``), so a variable built from the WebSocket API's URL (``WEBSOCKET_ENDPOINT``)
names the gateway locally."""


def _is_websocket_api(name: str, template: dict[str, Any]) -> bool:
    resource = template.get("Resources", {}).get(name.split(".", 1)[0]) or {}
    return bool(
        resource.get("Type") == "AWS::ApiGatewayV2::Api"
        and resource.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"
    )


def _local_websocket_endpoint() -> str:
    value = os.environ.get(LOCAL_WEBSOCKET_ENDPOINT, "").strip()
    if not value:
        raise _NoLocalValue("the WebSocket API's URL: the local gateway serves it when it runs (make run)")
    return value


def _ref(name: str, template: dict[str, Any], table: str) -> str:
    pseudo = {"AWS::Region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), "AWS::Partition": "aws"}
    if name in pseudo:
        return pseudo[name]
    parameter = template.get("Parameters", {}).get(name)
    if parameter is not None:
        if name in NOT_EMULATED:
            raise _NoLocalValue(NOT_EMULATED[name])
        if "Default" not in parameter:
            raise _NoLocalValue(f"parameter {name} has no default")
        default = parameter["Default"]
        return ",".join(map(str, default)) if isinstance(default, list) else str(default)
    resource = template.get("Resources", {}).get(name)
    if resource is not None and resource["Type"] == "AWS::DynamoDB::Table":
        return table
    if resource is not None and resource["Type"] == "AWS::Events::EventBus":
        return LOCAL_EVENT_BUS  # the local stack's bus (local_stack.eventbridge) takes any name
    kind = resource["Type"] if resource is not None else "unknown"
    raise _NoLocalValue(f"{name} ({kind}) is not emulated locally")


def function_environment(
    name: str, template: dict[str, Any] | None = None, table: str | None = None
) -> FunctionEnvironment:
    """The environment the template gives function ``name`` (its logical id), evaluated locally."""
    template = template or _cached_template()
    table = table or os.environ.get("TABLE_NAME") or LOCAL_TABLE
    resource = functions(template).get(name)
    declared = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **((resource or {}).get("Properties", {}).get("Environment", {}).get("Variables", {})),
    }
    variables, left_out = {}, {}
    for variable, value in declared.items():
        try:
            variables[variable] = _local_value(value, template, table)
        except _NoLocalValue as exc:
            left_out[variable] = str(exc)
    return FunctionEnvironment(variables, left_out)


def environment_for(name: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a local execution environment of function ``name`` starts with: the template's
    variables for it, under the given environment (default ``os.environ``: the stack's own
    settings and whatever the user exported win, as ``sam local invoke --env-vars`` does)."""
    base = dict(os.environ if base is None else base)
    if name not in functions(_cached_template()):
        return base
    return {**function_environment(name, table=base.get("TABLE_NAME")).variables, **base}


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int) -> dict[str, Any]:
    return load(path)


def _cached_template() -> dict[str, Any]:
    return _load_cached(TEMPLATE, TEMPLATE.stat().st_mtime_ns)


def template_parameters() -> dict[str, Any]:
    """``template.yaml``'s parameters (read once per change of the file; do not modify)."""
    parameters: dict[str, Any] = _cached_template().get("Parameters", {})
    return parameters
