"""Concurrent findings against a moto server: CAPACITY holds, the table equals the ACL.

Eight workers push 200 distinct global addresses through the real handler (200 SSH brute
force findings, one address each) into one network ACL whose reserved range (100-119) is
twice CAPACITY (10), with one foreign entry inside the range and others around it. Nearly
every placement has to evict, so the workers contend for the ACL's lease. Afterwards at
most CAPACITY entries are ours, no rule number is used twice, nothing outside the range or
foreign changed, the rows describe exactly the entries in the ACL, and no
lease is left behind. An invocation that raises is delivered again, as Lambda does for asynchronous
invocations (up to twice).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from bundle.motoserver import InProcessContext, moto_server, pointed_at
from functions.common import aws, lease
from functions.nacl_blocker import handler, logic
from tests.helpers_blocking import attacker_addresses

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
TABLE = "nacl-blocker-state"
WORKERS = 8
LAMBDA_ASYNC_RETRIES = 2
FINDINGS = 200
CAPACITY = 10
RANGE = range(100, 120)
FOREIGN = (105, "9.9.9.9/32")
AROUND = [(99, "203.0.113.0/24"), (120, "198.51.100.0/24")]


CONTEXT = InProcessContext.named("nacl-blocker")


def ssh_finding(source: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "gd_waf_ssh_bruteforce_inbound.json").read_text())
    event["id"] = str(uuid.uuid4())
    event["detail"]["id"] = uuid.uuid4().hex
    action = event["detail"]["service"]["action"]["networkConnectionAction"]
    action["remoteIpDetails"]["ipAddressV4"] = source
    return event


def add_entry(ec2: Any, acl: str, number: int, cidr: str, action: str = "deny") -> None:
    ec2.create_network_acl_entry(
        NetworkAclId=acl,
        RuleNumber=number,
        Protocol="-1",
        RuleAction=action,
        Egress=False,
        CidrBlock=cidr,
    )


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server() as server, pointed_at(server.endpoint):
        aws.reset()
        ec2 = boto3.client("ec2", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        for number, cidr in [FOREIGN, *AROUND]:
            add_entry(ec2, acl, number, cidr)
        ddb.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        settings = {
            "STATE_TABLE": TABLE,
            "NACL_IDS": json.dumps([acl]),
            "RULE_RANGE_START": str(RANGE.start),
            "RULE_RANGE_END": str(RANGE.stop - 1),
            "CAPACITY": str(CAPACITY),
            "DIRECTIONS": '["ingress"]',
            "NOTIFY_TOPIC_ARN": "",
        }
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        try:
            yield acl
        finally:
            aws.reset()


# A wedged moto server would otherwise hold the run for botocore's full retry budget.
@pytest.mark.timeout(240)
def test_concurrent_findings_keep_capacity_and_the_table_equals_the_acl(deployed: str) -> None:
    acl = deployed
    sources = attacker_addresses(FINDINGS)
    findings = [ssh_finding(source) for source in sources]
    guard = threading.Lock()
    conflicts: collections.Counter[str] = collections.Counter()

    def count_conflicts(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        if code in {"ConditionalCheckFailedException", "NetworkAclEntryAlreadyExists"}:
            with guard:
                conflicts[f"{model.name}: {code}"] += 1

    aws.session().events.register("after-call", count_conflicts)
    redeliveries: collections.Counter[str] = collections.Counter()

    def deliver(event: dict[str, Any]) -> dict[str, Any]:
        # As Lambda does for an asynchronous invocation that raised: deliver it again.
        for _ in range(LAMBDA_ASYNC_RETRIES):
            try:
                result: dict[str, Any] = handler.lambda_handler(event, CONTEXT)
                return result
            except Exception as exc:  # Lambda retries whatever the error was
                with guard:
                    redeliveries[type(exc).__name__] += 1
        result = handler.lambda_handler(event, CONTEXT)
        return result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(deliver, findings))
    elapsed = time.monotonic() - started

    assert all(result["status"] == "processed" for result in results)
    outcomes = [(len(r["blocked"]), len(r["rejected"])) for r in results]
    # Each address was placed, or withdrawn because a concurrent finding evicted it first.
    assert all(outcome in {(1, 0), (0, 1)} for outcome in outcomes)
    for result in results:
        for rejected in result["rejected"]:
            assert "withdrawn by a concurrent unblock or eviction" in rejected["reason"]

    ec2 = boto3.client("ec2", region_name=REGION)
    entries = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"][0]["Entries"]
    ingress = [e for e in entries if not e["Egress"]]
    numbers = [e["RuleNumber"] for e in ingress]
    assert len(numbers) == len(set(numbers)), "a rule number is used twice"
    by_number = {e["RuleNumber"]: (e["CidrBlock"], e["RuleAction"]) for e in ingress}
    for number, cidr in [FOREIGN, *AROUND]:
        assert by_number.pop(number) == (cidr, "deny"), f"rule {number} was changed"
    by_number.pop(32767, None)  # AWS's catch-all; moto gives a new ACL none
    assert set(by_number) <= set(RANGE), "an entry landed outside the reserved range"
    assert all(action == "deny" for _, action in by_number.values())
    ours = {number: cidr for number, (cidr, _) in by_number.items()}
    assert 0 < len(ours) <= CAPACITY
    assert set(ours.values()) <= {f"{source}/32" for source in sources}

    ddb = boto3.client("dynamodb", region_name=REGION)
    items = [
        item
        for page in ddb.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
        for item in page["Items"]
    ]
    rows = {
        i["cidr"]["S"]: int(i["rule_number"]["N"]) if "rule_number" in i else None
        for i in items
        if i["pk"]["S"].startswith(logic.ROW_PREFIX)
    }
    assert not [i for i in items if i["pk"]["S"].startswith(lease.LEASE_PREFIX)], "stale lease"
    assert rows == {cidr: number for number, cidr in ours.items()}

    print(
        f"\n{FINDINGS} findings, {WORKERS} workers, {elapsed:.1f} s: {len(ours)} entries kept; "
        f"conflicts {dict(conflicts)}; redeliveries {dict(redeliveries)}"
    )
    assert conflicts, "the workers never collided, so the conditional writes went untested"
