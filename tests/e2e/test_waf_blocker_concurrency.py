"""Concurrent findings against a moto server: the LockToken loop loses no update.

Eight workers push 1,000 distinct global addresses through the real handler (200 port
probe findings of five addresses each) into one REGIONAL IPv4 IP set. Afterwards the set
holds exactly those 1,000 addresses, once each, and the state table agrees. The run also
counts the optimistic-lock conflicts, to show the workers really did collide. An
invocation that runs out of LockToken attempts raises, and is delivered again as Lambda
does for asynchronous invocations (up to twice).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from bundle.motoserver import InProcessContext, moto_server, pointed_at
from functions.common import aws
from functions.waf_blocker import handler, logic
from tests.helpers_blocking import attacker_addresses

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
WORKERS = 8
LAMBDA_ASYNC_RETRIES = 2
FINDINGS = 200
PER_FINDING = 5


CONTEXT = InProcessContext.named("waf-blocker")


def port_probe_finding(sources: list[str]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "gd_waf_port_probe.json").read_text())
    finding_id = uuid.uuid4().hex
    event["id"] = str(uuid.uuid4())
    event["detail"]["id"] = finding_id
    template = event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"][0]
    details = []
    for source in sources:
        detail = copy.deepcopy(template)
        detail["remoteIpDetails"]["ipAddressV4"] = source
        details.append(detail)
    event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"] = details
    return event


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with moto_server() as server, pointed_at(server.endpoint):
        aws.reset()
        waf = boto3.client("wafv2", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        v4 = waf.create_ip_set(
            Name="blocklist-ipv4", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[]
        )["Summary"]
        v6 = waf.create_ip_set(
            Name="blocklist-ipv6", Scope="REGIONAL", IPAddressVersion="IPV6", Addresses=[]
        )["Summary"]
        ddb.create_table(
            TableName="waf-blocker-state",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        settings = {
            "STATE_TABLE": "waf-blocker-state",
            "IPV4_SET_NAME": v4["Name"],
            "IPV4_SET_ID": v4["Id"],
            "IPV6_SET_NAME": v6["Name"],
            "IPV6_SET_ID": v6["Id"],
            "IP_SET_SCOPE": "REGIONAL",
            "NOTIFY_TOPIC_ARN": "",
        }
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        try:
            yield settings
        finally:
            aws.reset()


# A wedged moto server would otherwise hold the run for botocore's full retry budget.
@pytest.mark.timeout(240)
def test_concurrent_findings_lose_no_address(deployed: dict[str, str]) -> None:
    sources = attacker_addresses(FINDINGS * PER_FINDING)
    findings = [
        port_probe_finding(sources[index : index + PER_FINDING])
        for index in range(0, len(sources), PER_FINDING)
    ]
    conflicts: list[str] = []
    guard = threading.Lock()

    def count_conflicts(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "WAFOptimisticLockException":
            with guard:
                conflicts.append("conflict")

    aws.session().events.register("after-call.wafv2.UpdateIPSet", count_conflicts)

    redeliveries: list[str] = []

    def deliver(event: dict[str, Any]) -> dict[str, Any]:
        # As Lambda does for an asynchronous invocation that raised: deliver it again.
        for _ in range(LAMBDA_ASYNC_RETRIES):
            try:
                result: dict[str, Any] = handler.lambda_handler(event, CONTEXT)
                return result
            except logic.IpSetUpdateError:
                with guard:
                    redeliveries.append(event["detail"]["id"])
        result = handler.lambda_handler(event, CONTEXT)
        return result

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(deliver, findings))

    assert all(result["status"] == "processed" for result in results)
    assert sum(len(result["blocked"]) for result in results) == len(sources)

    waf = boto3.client("wafv2", region_name=REGION)
    in_set = waf.get_ip_set(
        Name=deployed["IPV4_SET_NAME"], Scope="REGIONAL", Id=deployed["IPV4_SET_ID"]
    )["IPSet"]["Addresses"]
    expected = {f"{source}/32" for source in sources}
    assert len(in_set) == len(expected)  # once each
    assert set(in_set) == expected

    ddb = boto3.client("dynamodb", region_name=REGION)
    rows = [
        item
        for page in ddb.get_paginator("scan").paginate(TableName="waf-blocker-state")
        for item in page["Items"]
        if item["pk"]["S"].startswith(logic.ROW_PREFIX)
    ]
    assert {item["address"]["S"] for item in rows} == expected
    assert len(rows) == len(expected)

    print(
        f"\n{len(findings)} findings, {WORKERS} workers: {len(conflicts)} lock conflicts "
        f"retried, {len(redeliveries)} invocations out of attempts and redelivered"
    )
    assert conflicts, "the workers never collided, so the LockToken loop went untested"
