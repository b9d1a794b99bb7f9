"""Reads ``template.yaml``: the single source of truth for routes, handlers and the table.

The local stack and the tests both take the table definition and the routes from here, so
neither can drift from what ``sam deploy`` creates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (``!Ref``, ``!GetAtt``, ``!Sub``...)."""


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
    if props.get("GlobalSecondaryIndexes"):
        definition["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return definition


def ttl_attribute(template: dict[str, Any] | None = None) -> str | None:
    template = template or load()
    for res in template["Resources"].values():
        if res["Type"] == "AWS::DynamoDB::Table":
            spec = res["Properties"].get("TimeToLiveSpecification")
            return spec["AttributeName"] if spec and spec.get("Enabled") else None
    return None


def ensure_table(client: Any, table_name: str) -> bool:
    """Create the table if it is missing; True when it was created."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(TableName=table_name, **table_definition())
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = ttl_attribute()
    if ttl:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )
    return True
