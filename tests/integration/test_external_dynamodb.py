"""``DYNAMODB_ENDPOINT``: the stack uses that DynamoDB, creating the table there when missing."""

from __future__ import annotations

import uuid

import boto3

from tests.integration.conftest import client, local_stack, new_user, ok


def test_stack_creates_its_table_in_the_given_dynamodb_and_keeps_data_there(dynamodb_endpoint: str) -> None:
    table = f"chat-sessions-ext-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    assert table not in dynamodb.list_tables()["TableNames"]
    user = new_user()
    with local_stack(DYNAMODB_ENDPOINT=dynamodb_endpoint, TABLE_NAME=table) as url, client(url, user) as http:
        sid = ok(http.post("/sessions", json={"name": "kept outside"}), 201)["sessionId"]
    description = dynamodb.describe_table(TableName=table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    keys = {(item["PK"]["S"], item["SK"]["S"]) for item in dynamodb.scan(TableName=table)["Items"]}
    assert any(sid in sk for _, sk in keys), keys
    # A second stack finds the table (and the data) instead of creating it again.
    with local_stack(DYNAMODB_ENDPOINT=dynamodb_endpoint, TABLE_NAME=table) as url, client(url, user) as http:
        assert [s["sessionId"] for s in ok(http.get("/sessions"))["items"]] == [sid]
