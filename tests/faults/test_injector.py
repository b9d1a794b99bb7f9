"""The fault injector itself: every shape it makes is what botocore expects from DynamoDB, faults
that are not forwarded leave the table as it was, a lost answer was committed, tokens behave as on
AWS, the draws are seeded, and the counters count.

The backends are real: Amazon's DynamoDB Local, and moto's server (which ignores
``ClientRequestToken``, which is why the injector keeps tokens itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_stack import dynamodb as moto_dynamodb
from local_stack.faults import DEFAULT_RATES, FaultSpec, injecting, parse_spec
from local_stack.template import ensure_table
from tests.faults.conftest import direct_client
from tests.integration.conftest import CLEAN_ENV
from tests.servers import ROOT

# One DynamoDB Local and one stack for the whole tier: under pytest-xdist (make test) its tests
# run on one worker.
pytestmark = pytest.mark.xdist_group("faults")


def client(url: str, attempts: int = 1) -> Any:
    """A client like the service's (standard retries), with ``attempts`` tries in all."""
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=10),
    )


def spec(text: str) -> FaultSpec:
    parsed = parse_spec(text)
    assert parsed is not None
    return parsed


@pytest.fixture
def table(dynamodb_local_url: str) -> str:
    """A fresh table (the template's definition) in DynamoDB Local, created directly."""
    name = f"faults-{uuid.uuid4().hex[:10]}"
    ensure_table(direct_client(dynamodb_local_url), name)
    return name


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server, url = moto_dynamodb.start_in_thread()
    yield url
    server.shutdown()


def key(pk: str, sk: str = "x") -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def put(table: str, pk: str) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": {**key(pk), "v": {"N": "1"}}}}


def bump(table: str, pk: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": key(pk),
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def stored(url: str, table: str) -> dict[str, dict[str, Any]]:
    items = direct_client(url).scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["PK"]["S"]: item for item in items}


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, dict[str, Any]]:
    response = cast(dict[str, Any], exc.value.response)
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response


# --- the specification ---------------------------------------------------------------------------


def test_spec_preset_overrides_and_errors() -> None:
    preset = spec("default")
    assert preset.seed == 7 and {k: v for k, v in preset.rates.items() if v} == DEFAULT_RATES
    assert preset.describe() == "seed=7,tx_conflict=0.12,write_conflict=0.08,throttle=0.04,lost=0.04,in_progress=0.5"
    changed = spec("default, throttle=0.2 ,seed=3")
    assert (changed.seed, changed.rates["throttle"], changed.rates["tx_conflict"]) == (3, 0.2, 0.12)
    only = spec("seed=1,lost=0.5,tokens=backend")
    assert {k for k, v in only.rates.items() if v} == {"lost"} and only.tokens == "backend"
    for off in (None, "", " 0 ", "off", "none"):
        assert parse_spec(off) is None
    for bad, message in [
        ("conflict=0.1", "unknown name 'conflict'"),
        ("throttle=2", "between 0 and 1"),
        ("throttle", "not name=value"),
        ("seed=x", "seed must be an integer"),
        ("tx_conflict=0.7,throttle=0.4", "add up to 1.1"),
        ("tokens=maybe", "tokens must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)


# --- shapes --------------------------------------------------------------------------------------


def test_transaction_conflict_cancels_with_one_reason_per_item(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("tx_conflict=1")) as injector:
        ddb = client(injector.url)
        with pytest.raises(ClientError) as caught:
            ddb.transact_write_items(TransactItems=[put(table, "a"), put(table, "b"), bump(table, "c")])
        status, code, response = error(caught)
        assert (status, code) == (400, "TransactionCanceledException")
        reasons = [r["Code"] for r in response["CancellationReasons"]]
        assert (
            len(reasons) == 3 and "TransactionConflict" in reasons and set(reasons) <= {"TransactionConflict", "None"}
        )
        assert all(("Message" in r) == (r["Code"] != "None") for r in response["CancellationReasons"])
        assert "please refer cancellation reasons" in response["Error"]["Message"]
        with pytest.raises(ClientError) as caught:
            ddb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key("a")}}])
        status, code, response = error(caught)
        assert (status, code, [r["Code"] for r in response["CancellationReasons"]]) == (
            400,
            "TransactionCanceledException",
            ["TransactionConflict"],
        )
        # botocore maps it to the modeled exception class too.
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[put(table, "d")])
    assert stored(dynamodb_local_url, table) == {}


def test_single_write_conflict_on_items_transactions_write(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("write_conflict=1")) as injector:
        ddb = client(injector.url, attempts=3)  # botocore does not retry it
        ddb.transact_write_items(TransactItems=[put(table, "a")])
        for call in (
            lambda: ddb.put_item(TableName=table, Item={**key("a"), "v": {"N": "2"}}),
            lambda: ddb.update_item(
                TableName=table,
                Key=key("a"),
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": "3"}},
            ),
            lambda: ddb.delete_item(TableName=table, Key=key("a")),
        ):
            with pytest.raises(ddb.exceptions.TransactionConflictException) as caught:
                call()
            assert error(caught)[:2] == (400, "TransactionConflictException")
        # An item no transaction writes is never refused this way; nor is a read.
        ddb.put_item(TableName=table, Item=key("solo"))
        ddb.get_item(TableName=table, Key=key("a"))
        counts = injector.snapshot()
    assert counts["faults"] == {"write_conflict": {"DeleteItem": 1, "PutItem": 1, "UpdateItem": 1}}
    assert {k: v["v"]["N"] for k, v in stored(dynamodb_local_url, table).items() if "v" in v} == {"a": "1"}
    assert "solo" in stored(dynamodb_local_url, table)


def test_throttling_in_each_of_its_shapes(dynamodb_local_url: str, table: str) -> None:
    seen: dict[str, dict[str, Any]] = {}
    with injecting(dynamodb_local_url, spec("throttle=1,seed=3")) as injector:
        ddb = client(injector.url)
        for i in range(24):
            with pytest.raises(ClientError) as caught:
                if i % 2:
                    ddb.put_item(TableName=table, Item=key(f"p{i}"))
                else:
                    ddb.transact_write_items(TransactItems=[put(table, f"t{i}"), put(table, f"u{i}")])
            status, code, response = error(caught)
            assert status == 400
            seen[code] = response
    assert set(seen) == {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "TransactionCanceledException",
    }
    reason = seen["ProvisionedThroughputExceededException"]["ThrottlingReasons"][0]
    assert reason["reason"] in ("TableWriteKeyRangeThroughputExceeded",)
    assert reason["resource"].endswith(f":table/{table}")
    assert seen["ThrottlingException"]["throttlingReasons"][0]["reason"] == "TableWriteMaxOnDemandThroughputExceeded"
    cancellation = [r["Code"] for r in seen["TransactionCanceledException"]["CancellationReasons"]]
    assert sorted(cancellation) == ["None", "ThrottlingError"]
    assert stored(dynamodb_local_url, table) == {}


def test_botocore_retries_throttling_and_server_errors(dynamodb_local_url: str, table: str) -> None:
    # At 40% with three attempts, most calls get through: the SDK absorbs these by itself.
    with injecting(dynamodb_local_url, spec("throttle=0.2,server_error=0.2,seed=11")) as injector:
        ddb = client(injector.url, attempts=3)
        outcomes: list[str] = []
        for i in range(10):
            try:
                ddb.put_item(TableName=table, Item=key(f"k{i}"))
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])
        counts = injector.snapshot()
    assert outcomes.count("ok") >= 7, outcomes
    assert set(outcomes) <= {
        "ok",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalServerError",
    }
    assert counts["calls"]["PutItem"] > 10  # the retries went through the injector
    assert len(stored(dynamodb_local_url, table)) == outcomes.count("ok")


def test_server_error_is_a_500_and_changes_nothing(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("server_error=1")) as injector, pytest.raises(ClientError) as caught:
        client(injector.url).put_item(TableName=table, Item=key("a"))
    status, code, response = error(caught)
    assert (status, code, response["Error"]["Message"]) == (500, "InternalServerError", "Internal server error")
    assert stored(dynamodb_local_url, table) == {}


def test_lost_answers_were_committed(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("lost=1,lost_write=1")) as injector:
        ddb = client(injector.url)  # one attempt: the 500 reaches the caller
        with pytest.raises(ClientError) as caught:
            ddb.transact_write_items(TransactItems=[put(table, "a"), bump(table, "b")])
        assert error(caught)[:2] == (500, "InternalServerError")
        with pytest.raises(ClientError) as caught:
            ddb.put_item(TableName=table, Item=key("c"))
        assert error(caught)[:2] == (500, "InternalServerError")
        assert injector.snapshot()["faults"] == {"lost": {"TransactWriteItems": 1}, "lost_write": {"PutItem": 1}}
    assert set(stored(dynamodb_local_url, table)) == {"a", "b", "c"}


def test_unprocessed_batches_hand_back_what_was_not_written(dynamodb_local_url: str, table: str) -> None:
    requests = [{"PutRequest": {"Item": key(f"k{i}")}} for i in range(6)]
    with injecting(dynamodb_local_url, spec("unprocessed=1,seed=5")) as injector:
        ddb = client(injector.url)
        result = ddb.batch_write_item(RequestItems={table: requests})
        back = result["UnprocessedItems"][table]
        written = set(stored(dynamodb_local_url, table))
        assert back and written | {r["PutRequest"]["Item"]["PK"]["S"] for r in back} == {f"k{i}" for i in range(6)}
        assert not written & {r["PutRequest"]["Item"]["PK"]["S"] for r in back}
        got = ddb.batch_get_item(RequestItems={table: {"Keys": [key(f"k{i}") for i in range(6)]}})
        answered = {item["PK"]["S"] for item in got["Responses"].get(table, [])}
        unanswered = {k["PK"]["S"] for k in got["UnprocessedKeys"][table]["Keys"]}
        assert unanswered and not answered & unanswered and answered | unanswered == {f"k{i}" for i in range(6)}


# --- ClientRequestToken --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["dynamodb_local", "moto"])
def test_sdk_retry_of_a_lost_answer_is_applied_once(backend: str, dynamodb_local_url: str, moto_url: str) -> None:
    url = dynamodb_local_url if backend == "dynamodb_local" else moto_url
    name = f"faults-{uuid.uuid4().hex[:10]}"
    ensure_table(direct_client(url), name)
    with injecting(url, spec("lost=1,in_progress=1")) as injector:
        # Lost (500), in progress (400), then the stored success: botocore's three attempts, one token.
        client(injector.url, attempts=3).transact_write_items(TransactItems=[bump(name, "counter")])
        counts = injector.snapshot()
    assert stored(url, name)["counter"]["n"] == {"N": "1"}
    assert counts["faults"] == {"in_progress": {"TransactWriteItems": 1}, "lost": {"TransactWriteItems": 1}}
    assert counts["tokens"] == {"replayed": 1}
    assert counts["answers"] == {"200": 1, "400 TransactionInProgressException": 1, "500 InternalServerError": 1}


def test_lost_answer_whose_retries_fail_too_reaches_the_caller(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("lost=1,lost_retries=1")) as injector:
        ddb = client(injector.url, attempts=3)
        token = uuid.uuid4().hex
        with pytest.raises(ClientError) as caught:
            ddb.transact_write_items(TransactItems=[bump(table, "n")], ClientRequestToken=token)
        assert error(caught)[:2] == (500, "InternalServerError")  # after botocore's three attempts
        assert stored(dynamodb_local_url, table)["n"]["n"] == {"N": "1"}  # ... yet it was committed
        # Later, the same token is the same transaction again: success, not applied twice.
        ddb.transact_write_items(TransactItems=[bump(table, "n")], ClientRequestToken=token)
        counts = injector.snapshot()
    assert counts["faults"] == {"lost": {"TransactWriteItems": 1}, "lost_retries": {"TransactWriteItems": 2}}
    assert counts["tokens"] == {"replayed": 1}
    assert stored(dynamodb_local_url, table)["n"]["n"] == {"N": "1"}


def test_tokens_left_to_the_backend_show_who_honours_them(dynamodb_local_url: str, moto_url: str) -> None:
    """Why the injector keeps tokens: a retry of a lost answer (same token, sent straight to the
    backend here) is applied once by DynamoDB Local, twice by moto."""
    applied: dict[str, str] = {}
    for backend, url in (("dynamodb_local", dynamodb_local_url), ("moto", moto_url)):
        name = f"faults-{uuid.uuid4().hex[:10]}"
        ensure_table(direct_client(url), name)
        token = uuid.uuid4().hex
        with injecting(url, spec("lost=1,tokens=backend")) as injector:
            with pytest.raises(ClientError) as caught:
                client(injector.url).transact_write_items(TransactItems=[bump(name, "n")], ClientRequestToken=token)
            assert error(caught)[:2] == (500, "InternalServerError")
        direct_client(url).transact_write_items(TransactItems=[bump(name, "n")], ClientRequestToken=token)
        applied[backend] = stored(url, name)["n"]["n"]["N"]
    assert applied == {"dynamodb_local": "1", "moto": "2"}


def test_token_reused_with_other_parameters_is_a_mismatch(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("lost=0.0001,seed=2")) as injector:
        ddb = client(injector.url)
        token = uuid.uuid4().hex
        ddb.transact_write_items(TransactItems=[bump(table, "a")], ClientRequestToken=token)
        ddb.transact_write_items(
            TransactItems=[bump(table, "a")], ClientRequestToken=token, ReturnConsumedCapacity="TOTAL"
        )
        with pytest.raises(ddb.exceptions.IdempotentParameterMismatchException) as caught:
            ddb.transact_write_items(TransactItems=[bump(table, "b")], ClientRequestToken=token)
        assert error(caught)[:2] == (400, "IdempotentParameterMismatchException")
        assert injector.snapshot()["tokens"] == {"mismatch": 1, "replayed": 1}
    assert stored(dynamodb_local_url, table)["a"]["n"] == {"N": "1"} and "b" not in stored(dynamodb_local_url, table)


class _Gate(ThreadingHTTPServer):
    """A pass-through in front of DynamoDB Local that holds TransactWriteItems until released,
    so a transaction can be caught still running."""

    daemon_threads = True

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.arrived = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _GateHandler)


class _GateHandler(BaseHTTPRequestHandler):
    server: _Gate

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("X-Amz-Target", "").endswith("TransactWriteItems"):
            self.server.arrived.set()
            assert self.server.release.wait(30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.server.backend, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            self.send_response(response.status)
            self.send_header("Content-Type", response.headers["Content-Type"])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_token_still_running_answers_in_progress(dynamodb_local_url: str, table: str) -> None:
    gate = _Gate(dynamodb_local_url)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    try:
        with injecting(f"http://127.0.0.1:{gate.server_address[1]}", spec("lost=0.0001,seed=2")) as injector:
            token = uuid.uuid4().hex
            first: list[Any] = []
            same = {"TransactItems": [bump(table, "a")], "ClientRequestToken": token}
            worker = threading.Thread(target=lambda: first.append(client(injector.url).transact_write_items(**same)))
            worker.start()
            assert gate.arrived.wait(30)
            with pytest.raises(ClientError) as caught:
                client(injector.url).transact_write_items(**same)
            assert error(caught)[:2] == (400, "TransactionInProgressException")
            gate.release.set()
            worker.join(30)
            assert first and first[0]["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert injector.snapshot()["tokens"] == {"duplicate_in_flight": 1}
    finally:
        gate.release.set()
        gate.shutdown()
    assert stored(dynamodb_local_url, table)["a"]["n"] == {"N": "1"}


def test_a_cancelled_transaction_leaves_its_token_free(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("lost=0.0001,seed=2")) as injector:
        ddb = client(injector.url)
        token = uuid.uuid4().hex
        guarded = {
            "ConditionCheck": {"TableName": table, "Key": key("flag"), "ConditionExpression": "attribute_exists(PK)"}
        }
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[guarded, bump(table, "a")], ClientRequestToken=token)
        ddb.put_item(TableName=table, Item=key("flag"))
        ddb.transact_write_items(TransactItems=[guarded, bump(table, "a")], ClientRequestToken=token)
        assert injector.snapshot()["tokens"] == {}
    assert stored(dynamodb_local_url, table)["a"]["n"] == {"N": "1"}


# --- determinism, pass-through, counters ---------------------------------------------------------


def test_same_seed_same_faults_other_seed_other_faults(dynamodb_local_url: str, table: str) -> None:
    def run(seed: int) -> list[str]:
        with injecting(dynamodb_local_url, spec(f"seed={seed},throttle=0.3,tx_conflict=0.3")) as injector:
            ddb = client(injector.url)
            codes = []
            for i in range(30):
                try:
                    ddb.transact_write_items(TransactItems=[put(table, f"d{i}"), put(table, f"e{i}")])
                    codes.append("ok")
                except ClientError as exc:
                    reasons = [r["Code"] for r in exc.response.get("CancellationReasons", [])]
                    codes.append(f"{exc.response['Error']['Code']} {reasons}")
            return codes

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    conflicts = [c for c in first if "TransactionConflict'" in c]
    assert 4 <= len(conflicts) <= 16, first


def test_table_management_passes_untouched(dynamodb_local_url: str) -> None:
    name = f"faults-{uuid.uuid4().hex[:10]}"
    # Every data-plane request would be throttled; management calls are not data-plane.
    with injecting(dynamodb_local_url, spec("throttle=1")) as injector:
        ddb = client(injector.url)
        assert ensure_table(ddb, name) is True
        assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
        assert name in ddb.list_tables()["TableNames"]
        with pytest.raises(ClientError) as caught:
            ddb.describe_table(TableName="faults-missing-table")
        assert error(caught)[:2] == (400, "ResourceNotFoundException")  # the backend's own answer
        counts = injector.snapshot()
    assert counts["faults_total"] == 0 and counts["forwarded"] == counts["requests"]


def test_counters_in_process_and_over_http(dynamodb_local_url: str, table: str) -> None:
    with injecting(dynamodb_local_url, spec("seed=4,tx_conflict=0.5,throttle=0.2")) as injector:
        ddb = client(injector.url)
        for i in range(10):
            with contextlib.suppress(ClientError):
                ddb.transact_write_items(TransactItems=[put(table, f"c{i}")])
            if i % 5:
                with contextlib.suppress(ClientError):
                    ddb.get_item(TableName=table, Key=key(f"c{i}"))
        with urllib.request.urlopen(injector.url + "/__faults", timeout=10) as response:
            over_http = json.loads(response.read())
        with urllib.request.urlopen(injector.url + "/__faults/events?after=1", timeout=10) as response:
            events = json.loads(response.read())["events"]
        snapshot = injector.snapshot()
    assert over_http == snapshot
    assert snapshot["spec"] == "seed=4,tx_conflict=0.5,throttle=0.2"
    assert snapshot["calls"]["TransactWriteItems"] == 10 and snapshot["calls"]["GetItem"] == 8
    assert snapshot["faults_total"] == sum(sum(ops.values()) for ops in snapshot["faults"].values()) > 0
    assert snapshot["faults_total"] == snapshot["events"] == len(events) + 1
    assert {e["kind"] for e in events} <= {"tx_conflict", "throttle"}
    assert sum(snapshot["answers"].values()) == snapshot["requests"] == 18
    tx_ok = snapshot["calls"]["TransactWriteItems"] - sum(
        ops.get("TransactWriteItems", 0) for ops in snapshot["faults"].values()
    )
    assert len(stored(dynamodb_local_url, table)) == tx_ok


def test_the_stack_refuses_a_bad_spec() -> None:
    """``DYNAMODB_FAULTS`` with a typo stops ``make run`` with the reason, instead of running
    without the faults someone asked for, and before anything starts (no DynamoDB Local started
    only to be stopped again: nothing said on stdout)."""
    env = {**os.environ, **CLEAN_ENV, "DYNAMODB_FAULTS": "seed=1,tx_conflcit=0.2"}
    done = subprocess.run(
        [sys.executable, "-m", "local_stack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "DYNAMODB_FAULTS: unknown name 'tx_conflcit'" in done.stderr
    assert done.stdout == ""
