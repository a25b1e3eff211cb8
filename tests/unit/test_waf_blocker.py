"""waf_blocker against in-process moto: blocks, expiry, eviction, retries, idempotency."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import Field

from bundle.motoserver import FAKE_CREDENTIALS, InProcessContext
from functions.common import aws, engine, permissions
from functions.waf_blocker import handler, logic
from functions.waf_blocker.permissions import PERMISSIONS
from tests.helpers_blocking import HANDLED, START, FakeClock, malformed_event
from tests.helpers_permissions import record_calls
from tests.helpers_retries import lose_first_response

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SSH = "gd_waf_ssh_bruteforce_inbound.json"
PROBE = "gd_waf_port_probe.json"
IAM_V6 = "gd_waf_iam_malicious_ip_caller_ipv6.json"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


CONTEXT = InProcessContext.named("waf-blocker", remaining_ms=30_000)


@dataclass
class Env:
    """The deployed resources (created with plain boto3, so setup is not recorded)."""

    waf: Any
    ddb: Any
    sqs: Any
    table: str
    queue_url: str
    sets: dict[int, dict[str, str]]
    calls: set[str]
    counted: list[str]
    clock: FakeClock
    monkeypatch: pytest.MonkeyPatch

    def invoke(self, event: Any) -> dict[str, Any]:
        result: dict[str, Any] = handler.lambda_handler(event, CONTEXT, clock=self.clock.clock)
        return result

    def set_env(self, **values: str) -> None:
        for key, value in values.items():
            self.monkeypatch.setenv(key, value)

    def ip_set(self, version: int) -> list[str]:
        ref = self.sets[version]
        addresses: list[str] = self.waf.get_ip_set(
            Name=ref["Name"], Scope="REGIONAL", Id=ref["Id"]
        )["IPSet"]["Addresses"]
        return addresses

    def write_ip_set(self, version: int, addresses: list[str]) -> None:
        ref = self.sets[version]
        token = self.waf.get_ip_set(Name=ref["Name"], Scope="REGIONAL", Id=ref["Id"])["LockToken"]
        self.waf.update_ip_set(
            Name=ref["Name"], Scope="REGIONAL", Id=ref["Id"], Addresses=addresses, LockToken=token
        )

    def rows(self) -> dict[str, dict[str, Any]]:
        items = self.ddb.scan(TableName=self.table, ConsistentRead=True)["Items"]
        return {item["pk"]["S"]: item for item in items if item["pk"]["S"].startswith("ip#")}

    def delete_row(self, cidr: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": f"ip#{cidr}"}})

    def reports(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(json.loads(message["Body"])["Message"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def update_calls(self) -> int:
        return self.counted.count("wafv2:UpdateIPSet")

    def wafv2_client(self) -> Any:
        return aws.client("wafv2")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    with mock_aws():
        waf = boto3.client("wafv2", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        sets = {
            version: waf.create_ip_set(
                Name=f"blocklist-ipv{version}",
                Scope="REGIONAL",
                IPAddressVersion=f"IPV{version}",
                Addresses=[],
                Description="Addresses blocked by waf_blocker",
            )["Summary"]
            for version in (4, 6)
        }
        ddb.create_table(
            TableName="waf-blocker-state",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_time_to_live(
            TableName="waf-blocker-state",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        topic_arn = sns.create_topic(Name="remediation")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        for key, value in {
            "STATE_TABLE": "waf-blocker-state",
            "IPV4_SET_NAME": sets[4]["Name"],
            "IPV4_SET_ID": sets[4]["Id"],
            "IPV6_SET_NAME": sets[6]["Name"],
            "IPV6_SET_ID": sets[6]["Id"],
            "IP_SET_SCOPE": "REGIONAL",
            "ALLOWLIST_CIDRS": '["52.94.0.0/22", "2600:1f18::/36"]',
            "NOTIFY_TOPIC_ARN": topic_arn,
            # The expiries these tests expect count in hours; the module's default is 12.
            "BLOCK_TTL_SECONDS": "3600",
        }.items():
            monkeypatch.setenv(key, value)
        with record_calls() as calls:
            counted: list[str] = []

            def count(model: Any, **_: Any) -> None:
                counted.append(f"{model.service_model.endpoint_prefix}:{model.name}")

            aws.session().events.register("before-call", count, unique_id="test-count")
            yield Env(
                waf=waf,
                ddb=ddb,
                sqs=sqs,
                table="waf-blocker-state",
                queue_url=queue_url,
                sets={v: {"Name": s["Name"], "Id": s["Id"]} for v, s in sets.items()},
                calls=calls,
                counted=counted,
                clock=FakeClock(),
                monkeypatch=monkeypatch,
            )
            aws.session().events.unregister("before-call", unique_id="test-count")
        # Every path a test exercised must be covered by the declared permissions.
        assert calls <= permissions.actions(PERMISSIONS), calls - permissions.actions(PERMISSIONS)


def fail_updates(
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    codes: list[str],
    before: Callable[[], None] = lambda: None,
) -> list[str]:
    """Make the function's own WAF client fail UpdateIPSet with ``codes``, then behave.

    The real moto call runs once the codes are used up, so the code under test stays real.
    """
    client = env.wafv2_client()
    real_update = client.update_ip_set
    remaining = list(codes)
    raised: list[str] = []

    def update_ip_set(**kwargs: Any) -> Any:
        if remaining:
            before()
            code = remaining.pop(0)
            raised.append(code)
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "UpdateIPSet")
        return real_update(**kwargs)

    monkeypatch.setattr(client, "update_ip_set", update_ip_set)
    return raised


# --------------------------------------------------------------------------- blocking


def test_blocks_the_inbound_attacker_records_it_and_reports(env: Env) -> None:
    event = load(SSH)
    result = env.invoke(event)

    assert result["status"] == "processed"
    assert result["blocked"] == [
        {"address": "185.220.101.46/32", "expiresAt": "2025-06-15T16:06:40Z"}
    ]
    assert env.ip_set(4) == ["185.220.101.46/32"]
    assert env.ip_set(6) == []
    row = env.rows()["ip#185.220.101.46/32"]
    assert row["address"] == {"S": "185.220.101.46/32"}
    assert row["version"] == {"N": "4"}
    assert row["expires_at"] == {"N": str(int(START) + 3600)}
    assert row["first_seen"] == row["last_seen"] == {"N": str(int(START))}
    assert row["hit_count"] == {"N": "1"}
    assert row["finding_ids"] == {"SS": [event["detail"]["id"]]}
    assert row["reason"] == {"S": "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce"}

    (sent,) = env.reports()
    assert sent["source"] == "playbook.waf_blocker"
    assert sent["account"] == ACCOUNT
    assert sent["detail"]["severity"] == "LOW", "GuardDuty rates an inbound SSH brute force Low"
    assert sent["detail"]["findingId"] == event["detail"]["id"]
    assert sent["detail"]["actions"] == [
        "Blocked 185.220.101.46/32 in WAF IP set blocklist-ipv4 until 2025-06-15T16:06:40Z"
    ]
    assert event["detail"]["arn"] in sent["resources"]


def test_ipv6_attacker_goes_to_the_ipv6_set_only(env: Env) -> None:
    result = env.invoke(load(IAM_V6))

    assert [b["address"] for b in result["blocked"]] == ["2a01:4f8:c17:2a45::1/128"]
    assert env.ip_set(6) == ["2a01:4f8:c17:2a45::1/128"]
    assert env.ip_set(4) == []
    assert env.rows()["ip#2a01:4f8:c17:2a45::1/128"]["version"] == {"N": "6"}
    assert env.update_calls() == 1


def test_every_address_of_a_finding_goes_in_one_update(env: Env) -> None:
    result = env.invoke(load(PROBE))

    assert sorted(env.ip_set(4)) == ["45.155.205.233/32", "80.82.77.139/32", "91.240.118.172/32"]
    assert len(result["blocked"]) == 3
    assert env.update_calls() == 1


def test_allow_listed_and_non_global_addresses_are_rejected_with_reasons(env: Env) -> None:
    env.set_env(ALLOWLIST_CIDRS="80.82.77.0/24, 2600:1f18::/36")
    event = load(PROBE)
    details = event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    details[1]["remoteIpDetails"]["ipAddressV4"] = "10.20.30.40"
    details.append({"remoteIpDetails": {"ipAddressV6": "2600:1f18:abc::9"}})

    result = env.invoke(event)

    assert env.ip_set(4) == ["91.240.118.172/32"]
    assert env.ip_set(6) == []
    assert result["rejected"] == [
        {"address": "80.82.77.139", "reason": "allow-listed by 80.82.77.0/24"},
        {"address": "10.20.30.40", "reason": "private address (RFC 1918)"},
        {"address": "2600:1f18:abc::9", "reason": "allow-listed by 2600:1f18::/36"},
    ]
    (sent,) = env.reports()
    assert "Did not block 10.20.30.40: private address (RFC 1918)" in sent["detail"]["actions"]
    assert set(env.rows()) == {"ip#91.240.118.172/32"}


def test_nothing_blockable_means_no_waf_write_but_people_are_told(env: Env) -> None:
    env.set_env(ALLOWLIST_CIDRS="185.220.101.0/24")
    result = env.invoke(load(SSH))

    assert result["blocked"] == []
    assert result["rejected"] == [
        {"address": "185.220.101.46", "reason": "allow-listed by 185.220.101.0/24"}
    ]
    assert env.update_calls() == 0
    assert env.rows() == {}
    (sent,) = env.reports()
    assert sent["detail"]["title"].startswith("Blocked 0 address(es)")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda d: d.update(type="Recon:EC2/Portscan"),
            "Recon:EC2/Portscan is not ours to block: our resource is",
        ),
        (lambda d: d.update(type="Made:Up/Type"), "is not in the catalog"),
        (lambda d: d.update(severity=0.9), "severity 0.9 is below the threshold 1.0"),
    ],
)
def test_findings_outside_the_catalog_or_below_threshold_are_ignored(
    env: Env, mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    event = load(SSH)
    mutate(event["detail"])

    result = env.invoke(event)

    assert result["status"] == "ignored"
    assert reason in result["reason"]
    assert env.counted == []
    assert env.reports() == []


def test_outbound_brute_force_blocks_nothing(env: Env) -> None:
    env.set_env(SEVERITY_THRESHOLD="1")
    result = env.invoke(load("gd_waf_ssh_bruteforce_outbound.json"))

    assert result["status"] == "processed"
    assert result["blocked"] == [] and result["rejected"] == []
    assert env.update_calls() == 0
    assert env.reports() == []


def test_threshold_comes_from_the_environment(env: Env) -> None:
    env.set_env(SEVERITY_THRESHOLD="6")
    assert env.invoke(load(SSH))["status"] == "ignored"


# --------------------------------------------------------------------------- capacity


def manual_block(env: Env, addresses: list[str], ttl: int, reason: str = "test") -> dict[str, Any]:
    return env.invoke(
        {"action": "block", "addresses": addresses, "ttl_seconds": ttl, "reason": reason}
    )


def test_at_capacity_the_addresses_expiring_first_are_evicted(env: Env) -> None:
    env.set_env(MAX_ADDRESSES_PER_SET="5")
    for address, ttl in [
        ("1.0.0.1", 7200),
        ("1.0.0.2", 300),  # expires first
        ("1.0.0.3", 3600),
        ("1.0.0.4", 600),  # expires second
        ("1.0.0.5", 5000),
    ]:
        manual_block(env, [address], ttl=ttl)
    env.reports()

    first = env.invoke(load(SSH))
    second = env.invoke(load("gd_waf_rdp_bruteforce_inbound.json"))

    assert first["evicted"] == ["1.0.0.2/32"]
    assert second["evicted"] == ["1.0.0.4/32"]
    assert sorted(env.ip_set(4)) == [
        "1.0.0.1/32",
        "1.0.0.3/32",
        "1.0.0.5/32",
        "185.220.101.46/32",
        "194.26.29.113/32",
    ]
    assert {"ip#1.0.0.2/32", "ip#1.0.0.4/32"}.isdisjoint(env.rows())
    assert len(env.rows()) == 5
    sent = env.reports()
    assert sent[0]["detail"]["actions"][-1] == (
        "Evicted 1.0.0.2/32 (it was due to expire first) to keep the IP set within 5 addresses"
    )


def test_eviction_keeps_the_set_within_the_cap(env: Env) -> None:
    env.set_env(MAX_ADDRESSES_PER_SET="5")
    manual_block(env, ["1.0.0.1", "1.0.0.2", "1.0.0.3"], ttl=600)
    manual_block(env, ["1.0.0.4", "1.0.0.5"], ttl=7200)

    result = env.invoke(load(PROBE))

    assert sorted(result["evicted"]) == ["1.0.0.1/32", "1.0.0.2/32", "1.0.0.3/32"]
    assert sorted(env.ip_set(4)) == [
        "1.0.0.4/32",
        "1.0.0.5/32",
        "45.155.205.233/32",
        "80.82.77.139/32",
        "91.240.118.172/32",
    ]
    assert len(env.rows()) == 5


def test_an_address_nobody_recorded_is_evicted_first(env: Env) -> None:
    env.set_env(MAX_ADDRESSES_PER_SET="3")
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=600)
    env.write_ip_set(4, [*env.ip_set(4), "9.9.9.9/32"])

    result = env.invoke(load(SSH))

    assert result["evicted"] == ["9.9.9.9/32"]
    assert sorted(env.ip_set(4)) == ["1.0.0.1/32", "1.0.0.2/32", "185.220.101.46/32"]


def test_a_request_larger_than_the_cap_blocks_what_fits(env: Env) -> None:
    env.set_env(MAX_ADDRESSES_PER_SET="2")
    result = env.invoke(load(PROBE))

    assert [b["address"] for b in result["blocked"]] == ["80.82.77.139/32", "45.155.205.233/32"]
    assert result["rejected"] == [
        {
            "address": "91.240.118.172/32",
            "reason": "one request may block at most 2 IPv4 addresses (IP set cap)",
        }
    ]
    assert len(env.ip_set(4)) == 2


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "codes",
    [
        ["WAFOptimisticLockException"],
        ["WAFOptimisticLockException", "WAFOptimisticLockException"],
        ["ThrottlingException"],
        ["WAFUnavailableEntityException", "ThrottlingException"],
    ],
)
def test_retryable_waf_errors_are_retried_with_backoff(
    env: Env, monkeypatch: pytest.MonkeyPatch, codes: list[str]
) -> None:
    raised = fail_updates(env, monkeypatch, codes)

    result = env.invoke(load(SSH))

    assert raised == codes
    assert [b["address"] for b in result["blocked"]] == ["185.220.101.46/32"]
    assert env.ip_set(4) == ["185.220.101.46/32"]
    assert len(env.clock.slept) == len(codes)
    for attempt, delay in enumerate(env.clock.slept):
        assert 0 <= delay <= min(logic.BACKOFF_CAP_SECONDS, logic.BACKOFF_BASE_SECONDS * 2**attempt)


def test_a_lock_conflict_rereads_so_the_other_writers_update_survives(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer gets in between our read and our write: WAF refuses our stale token.
    raised = fail_updates(
        env,
        monkeypatch,
        ["WAFOptimisticLockException"],
        before=lambda: env.write_ip_set(4, [*env.ip_set(4), "5.5.5.5/32"]),
    )

    env.invoke(load(SSH))

    assert raised == ["WAFOptimisticLockException"]
    assert sorted(env.ip_set(4)) == ["185.220.101.46/32", "5.5.5.5/32"]


def test_retry_exhaustion_raises_a_clear_error_and_a_redelivery_then_works(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = load(SSH)
    fail_updates(env, monkeypatch, ["WAFOptimisticLockException"] * logic.MAX_ATTEMPTS)

    message = f"after {logic.MAX_ATTEMPTS} attempts; last error: WAFOptimisticLockException"
    with pytest.raises(logic.IpSetUpdateError, match=message):
        env.invoke(event)
    assert len(env.clock.slept) == logic.MAX_ATTEMPTS - 1
    assert env.ip_set(4) == []
    assert env.reports() == []

    # Powertools dropped the in-progress record, so Lambda's retry really retries.
    result = env.invoke(event)
    assert [b["address"] for b in result["blocked"]] == ["185.220.101.46/32"]
    assert env.ip_set(4) == ["185.220.101.46/32"]


def test_non_retryable_waf_errors_surface_at_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_updates(env, monkeypatch, ["WAFInvalidParameterException"])
    with pytest.raises(ClientError, match="WAFInvalidParameterException"):
        env.invoke(load(SSH))
    assert env.clock.slept == []


# --------------------------------------------------------------------------- idempotency


def test_the_same_delivery_twice_changes_nothing_the_second_time(env: Env) -> None:
    event = load(PROBE)
    first = env.invoke(event)
    assert env.update_calls() == 1
    assert len(env.reports()) == 1
    rows_before = env.rows()

    env.clock.advance(60)
    second = env.invoke(copy.deepcopy(event))

    assert second == first
    assert env.update_calls() == 1
    assert env.reports() == []
    assert env.rows() == rows_before


def test_an_updated_finding_is_new_evidence_and_extends_the_block(env: Env) -> None:
    event = load(SSH)
    env.invoke(event)
    env.clock.advance(1800)
    event["detail"]["updatedAt"] = "2025-03-14T16:21:07.402Z"
    event["detail"]["service"]["count"] += 5

    result = env.invoke(event)

    assert result["blocked"] == [
        {"address": "185.220.101.46/32", "expiresAt": "2025-06-15T16:36:40Z"}
    ]
    row = env.rows()["ip#185.220.101.46/32"]
    assert row["expires_at"] == {"N": str(int(START) + 1800 + 3600)}
    assert row["first_seen"] == {"N": str(int(START))}
    assert row["hit_count"] == {"N": "2"}
    assert env.ip_set(4) == ["185.220.101.46/32"]
    assert env.update_calls() == 1  # already in the set: only the row changed
    assert len(env.reports()) == 2


def test_expiry_never_moves_earlier(env: Env) -> None:
    manual_block(env, ["185.220.101.46"], ttl=7200)
    env.invoke(load(SSH))  # one hour, later than nothing but shorter than two
    assert env.rows()["ip#185.220.101.46/32"]["expires_at"] == {"N": str(int(START) + 7200)}


# --------------------------------------------------------------------------- direct calls


def test_manual_block_and_unblock(env: Env) -> None:
    result = manual_block(
        env,
        ["1.1.1.1", "2a01:4f8:c17:2a45::1/128", "10.0.0.1", "1.2.3.0/24", "junk"],
        ttl=600,
        reason="INC-1234 credential stuffing",
    )

    assert [b["address"] for b in result["blocked"]] == ["1.1.1.1/32", "2a01:4f8:c17:2a45::1/128"]
    assert result["blocked"][0]["expiresAt"] == "2025-06-15T15:16:40Z"
    assert [r["address"] for r in result["rejected"]] == ["1.2.3.0/24", "junk", "10.0.0.1"]
    assert env.ip_set(4) == ["1.1.1.1/32"]
    assert env.ip_set(6) == ["2a01:4f8:c17:2a45::1/128"]
    assert env.rows()["ip#1.1.1.1/32"]["reason"] == {"S": "INC-1234 credential stuffing"}
    assert "finding_ids" not in env.rows()["ip#1.1.1.1/32"]
    (sent,) = env.reports()
    assert sent["detail"]["severity"] == "INFO"

    result = env.invoke(
        {"action": "unblock", "addresses": ["1.1.1.1", "9.9.9.9"], "reason": "false positive"}
    )

    assert result["unblocked"] == ["1.1.1.1/32"]
    assert result["notBlocked"] == ["9.9.9.9/32"]
    assert env.ip_set(4) == []
    assert env.ip_set(6) == ["2a01:4f8:c17:2a45::1/128"]
    assert set(env.rows()) == {"ip#2a01:4f8:c17:2a45::1/128"}
    (sent,) = env.reports()
    assert sent["detail"]["actions"] == ["Unblocked 1.1.1.1/32", "9.9.9.9/32 was not blocked"]


def test_manual_block_without_ttl_uses_the_configured_one(env: Env) -> None:
    env.set_env(BLOCK_TTL_SECONDS="900")
    result = env.invoke({"action": "block", "addresses": ["1.1.1.1"], "reason": "test"})
    assert result["blocked"] == [{"address": "1.1.1.1/32", "expiresAt": "2025-06-15T15:21:40Z"}]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"action": "block", "addresses": ["1.1.1.1"]}, "reason"),
        ({"action": "block", "addresses": [], "reason": "x"}, "addresses"),
        ({"action": "block", "addresses": ["1.1.1.1"], "reason": "x", "ttl_seconds": 5}, "ttl"),
        ({"action": "block", "addresses": ["1.1.1.1"], "reason": "x", "ttl_seconds": True}, "ttl"),
        ({"action": "block", "addresses": "1.1.1.1", "reason": "x"}, "addresses"),
        ({"action": "block", "addresses": [1], "reason": "x"}, "addresses"),
        ({"action": "block", "addresses": ["1.1.1.1"], "reason": "x", "extra": 1}, "extra"),
        ({"action": "unblock", "addresses": ["1.1.1.1"]}, "reason"),
        ({"action": "explode"}, "action"),
        ({"action": None}, "action"),
        (
            {"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {"id": "x"}},
            "invalid GuardDuty",
        ),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "invalid scheduled event"),
        ({"hello": "world"}, "unrecognised event"),
        ([1, 2, 3], "expected a JSON object"),
        ("block everything", "expected a JSON object"),
    ],
)
def test_bad_input_gets_a_clear_rejection(env: Env, event: Any, problem: str) -> None:
    result = env.invoke(event)
    assert result["status"] == "rejected"
    assert problem in result["reason"]
    assert env.counted == []


def test_a_malformed_finding_names_the_missing_field(env: Env) -> None:
    event = load(SSH)
    del event["detail"]["updatedAt"]
    result = env.invoke(event)
    assert result == {
        "status": "rejected",
        "reason": "invalid GuardDuty finding event: detail.updatedAt: Field required",
    }


def test_bad_configuration_fails_loudly(env: Env) -> None:
    env.set_env(ALLOWLIST_CIDRS='["10.0.0.1/8"]')
    with pytest.raises(
        logic.ConfigError, match=re.escape("ALLOWLIST_CIDRS: allowlist entry '10.0.0.1/8'")
    ):
        env.invoke(load(SSH))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IP_SET_SCOPE", "GLOBAL", "REGIONAL or CLOUDFRONT"),
        ("BLOCK_TTL_SECONDS", "10", "BLOCK_TTL_SECONDS must be"),
        ("BLOCK_TTL_SECONDS", "an hour", "must be a number"),
        ("SEVERITY_THRESHOLD", "11", "SEVERITY_THRESHOLD must be"),
        ("MAX_ADDRESSES_PER_SET", "10001", "MAX_ADDRESSES_PER_SET must be"),
        ("STATE_TABLE", "", "STATE_TABLE is required"),
    ],
)
def test_configuration_is_validated(name: str, value: str, message: str) -> None:
    base = {
        "STATE_TABLE": "t",
        "IPV4_SET_NAME": "v4",
        "IPV4_SET_ID": "a",
        "IPV6_SET_NAME": "v6",
        "IPV6_SET_ID": "b",
    }
    with pytest.raises(logic.ConfigError, match=message):
        logic.Config.from_env({**base, name: value})


def test_a_bounded_setting_names_its_range() -> None:
    """engine.Settings words every bound error from the field's own bounds, both or one."""

    class Bounded(engine.Settings):
        both: int = Field(default=5, alias="BOTH", ge=1, le=9)
        floor: int = Field(default=5, alias="FLOOR", ge=2)

    cases = {"BOTH": ("0", "BOTH must be 1..9, got 0"), "FLOOR": ("1", "FLOOR must be at least 2")}
    for name, (value, message) in cases.items():
        with pytest.raises(engine.ConfigError, match=re.escape(message)):
            Bounded.from_env({"STATE_TABLE": "t", name: value})


def test_configuration_defaults() -> None:
    config = logic.Config.from_env(
        {
            "STATE_TABLE": "t",
            "IPV4_SET_NAME": "v4",
            "IPV4_SET_ID": "a",
            "IPV6_SET_NAME": "v6",
            "IPV6_SET_ID": "b",
        }
    )
    assert (config.scope, config.block_ttl_seconds, config.severity_threshold) == (
        "REGIONAL",
        43200,
        1.0,
    )
    assert (config.max_addresses_per_set, config.notify_topic_arn, config.allowlist) == (
        10_000,
        "",
        (),
    )
    assert config.waf_region is None
    cloudfront = logic.Config.from_env(
        {
            "STATE_TABLE": "t",
            "IPV4_SET_NAME": "v4",
            "IPV4_SET_ID": "a",
            "IPV6_SET_NAME": "v6",
            "IPV6_SET_ID": "b",
            "IP_SET_SCOPE": "CLOUDFRONT",
        }
    )
    assert cloudfront.waf_region == "us-east-1"


def test_no_topic_means_no_report(env: Env) -> None:
    env.set_env(NOTIFY_TOPIC_ARN="")
    result = env.invoke(load(SSH))
    assert result["notified"] is False
    assert env.ip_set(4) == ["185.220.101.46/32"]
    assert env.reports() == []
    assert "sns:Publish" not in env.calls


# --------------------------------------------------------------------------- sweeper


SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2025-06-15T16:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/waf-blocker-sweep"],
    "detail": {},
}


def test_sweep_unblocks_what_expired_even_if_ttl_has_not_deleted_the_row(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "2a01:4f8::1"], ttl=600)
    manual_block(env, ["1.0.0.2"], ttl=7200)
    env.reports()

    env.clock.advance(599)
    assert env.invoke(SCHEDULED)["expired"] == []
    assert sorted(env.ip_set(4)) == ["1.0.0.1/32", "1.0.0.2/32"]

    env.clock.advance(1)  # expires_at <= now: expired
    assert "ip#1.0.0.1/32" in env.rows()  # moto, like DynamoDB TTL, has not deleted it
    result = env.invoke(SCHEDULED)

    assert sorted(result["expired"]) == ["1.0.0.1/32", "2a01:4f8::1/128"]
    assert sorted(result["removedExpired"]) == ["1.0.0.1/32", "2a01:4f8::1/128"]
    assert env.ip_set(4) == ["1.0.0.2/32"]
    assert env.ip_set(6) == []
    assert set(env.rows()) == {"ip#1.0.0.2/32"}
    (sent,) = env.reports()
    assert "Unblocked 1.0.0.1/32: its block expired" in sent["detail"]["actions"]


def test_an_expired_row_whose_delete_was_retried_after_it_succeeded_counts_as_expired(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's conditional delete lands, its response is lost, and the retry fails its
    condition because the row is gone: that is the expiry it asked for, not a re-block."""
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.reports()
    env.clock.advance(600)
    answered = lose_first_response(
        monkeypatch, aws.client("dynamodb"), "delete_item", lambda kw: "ConditionExpression" in kw
    )
    result = env.invoke(SCHEDULED)

    assert answered == ["ConditionalCheckFailedException"]
    assert result["expired"] == ["1.0.0.1/32"]
    assert result["removedExpired"] == ["1.0.0.1/32"]
    assert env.ip_set(4) == []
    assert env.rows() == {}


def test_sweep_by_direct_invocation_and_nothing_to_do_sends_nothing(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.reports()
    calls = env.update_calls()
    result = env.invoke({"action": "sweep"})
    assert result["status"] == "swept"
    assert result["notified"] is False
    assert env.update_calls() == calls
    assert env.reports() == []


def test_sweep_reconciles_both_ways(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2", "1.0.0.3"], ttl=3600)
    env.reports()
    # By hand: one address added without a row, one removed though its row is live,
    # and one row deleted while its address stays.
    env.write_ip_set(4, ["1.0.0.1/32", "1.0.0.3/32", "7.7.7.7/32"])
    env.delete_row("1.0.0.3/32")

    result = env.invoke(SCHEDULED)

    assert sorted(result["removedUnrecorded"]) == ["1.0.0.3/32", "7.7.7.7/32"]
    assert result["restored"] == ["1.0.0.2/32"]
    assert sorted(env.ip_set(4)) == ["1.0.0.1/32", "1.0.0.2/32"]
    (sent,) = env.reports()
    assert "Re-added 1.0.0.2/32: its block is recorded but was missing" in sent["detail"]["actions"]
    assert "Removed 7.7.7.7/32: no block is recorded for it" in sent["detail"]["actions"]


def test_an_emptied_table_empties_both_sets(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2", "2a01:4f8::1", "2a01:4f8::2"], ttl=3600)
    for key in env.rows():
        env.delete_row(key.removeprefix("ip#"))

    env.invoke(SCHEDULED)

    assert env.ip_set(4) == []
    assert env.ip_set(6) == []


def test_an_unreadable_row_does_not_wedge_the_sweeper(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    env.ddb.update_item(
        TableName=env.table,
        Key={"pk": {"S": "ip#1.0.0.2/32"}},
        UpdateExpression="REMOVE expires_at",
    )

    result = env.invoke(SCHEDULED)

    assert result["removedUnrecorded"] == ["1.0.0.2/32"]
    assert env.ip_set(4) == ["1.0.0.1/32"]


def test_sweep_brings_an_over_cap_table_back_within_the_cap(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    manual_block(env, ["1.0.0.2", "1.0.0.3"], ttl=3600)
    env.set_env(MAX_ADDRESSES_PER_SET="2")

    result = env.invoke(SCHEDULED)

    assert result["evicted"] == ["1.0.0.1/32"]
    assert sorted(env.ip_set(4)) == ["1.0.0.2/32", "1.0.0.3/32"]
    assert "ip#1.0.0.1/32" not in env.rows()


def test_sweep_retries_lock_conflicts_too(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.clock.advance(600)
    raised = fail_updates(env, monkeypatch, ["WAFOptimisticLockException"])
    env.invoke(SCHEDULED)
    assert raised == ["WAFOptimisticLockException"]
    assert env.ip_set(4) == []


def test_updates_carry_the_ip_set_description(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # UpdateIPSet replaces every mutable field, so leaving Description out would erase it
    # in AWS (moto keeps it, hence the spy on the request rather than on the result).
    client = env.wafv2_client()
    real_update = client.update_ip_set
    sent: list[dict[str, Any]] = []

    def update_ip_set(**kwargs: Any) -> Any:
        sent.append(kwargs)
        return real_update(**kwargs)

    monkeypatch.setattr(client, "update_ip_set", update_ip_set)
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.clock.advance(600)
    env.invoke(SCHEDULED)

    assert len(sent) == 2
    assert {request["Description"] for request in sent} == {"Addresses blocked by waf_blocker"}


# --------------------------------------------------------------------------- robustness


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_malformed_events_never_raise(env: Env, data: st.DataObject) -> None:
    shape, event = malformed_event(data, [load(SSH), load(PROBE), load(IAM_V6)])
    result = env.invoke(event)
    assert result["status"] in HANDLED
    event_label(f"{shape}: {result['status']}")


def test_every_call_is_declared(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.set_env(MAX_ADDRESSES_PER_SET="3", REPORT_EVENT_BUS="default")
    env.invoke(load(PROBE))
    env.invoke(load(PROBE))  # idempotent replay
    env.invoke(load(IAM_V6))
    manual_block(env, ["1.0.0.1"], ttl=600)  # evicts
    env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "test"})
    fail_updates(env, monkeypatch, ["WAFOptimisticLockException"])
    env.clock.advance(7200)
    env.invoke(SCHEDULED)

    declared = permissions.actions(PERMISSIONS)
    assert env.calls <= declared, env.calls - declared
    assert {
        "wafv2:GetIPSet",
        "wafv2:UpdateIPSet",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        "sns:Publish",
        "events:PutEvents",
    } <= env.calls


# --------------------------------------------------------------------------- roles and inputs

BLOCK_IP_ARN = "arn:aws:securityhub:us-east-1:123456789012:action/custom/BlockIP"


def test_a_tor_exit_connecting_in_is_blocked(env: Env) -> None:
    result = env.invoke(load("gd_ec2_tor_ip_caller.json"))
    assert result["status"] == "processed"
    assert [b["address"] for b in result["blocked"]] == ["185.220.101.33/32"]
    assert env.ip_set(4) == ["185.220.101.33/32"]


def test_a_custom_threat_list_caller_is_blocked_when_it_connects_in(env: Env) -> None:
    result = env.invoke(load("gd_ec2_malicious_ip_custom_inbound.json"))
    assert [b["address"] for b in result["blocked"]] == ["80.94.95.115/32"]


@pytest.mark.parametrize(
    "fixture", ["gd_ec2_cc_activity_outbound.json", "gd_ec2_malicious_ip_custom_outbound.json"]
)
def test_an_outbound_malicious_destination_never_enters_a_waf_set(env: Env, fixture: str) -> None:
    event = load(fixture)
    remote = event["detail"]["service"]["action"]["networkConnectionAction"]["remoteIpDetails"]

    result = env.invoke(event)

    assert result["blocked"] == []
    assert result["rejected"] == [
        {"address": remote["ipAddressV4"], "reason": logic.OUTBOUND_ONLY_AT_NACL}
    ]
    assert env.update_calls() == 0
    assert env.ip_set(4) == []
    assert env.rows() == {}


def test_a_spoofed_source_is_rejected(env: Env) -> None:
    event = load(SSH)
    event["source"] = "my.app"
    result = env.invoke(event)
    assert result == {
        "status": "rejected",
        "reason": "event claims detail-type 'GuardDuty Finding' but its source is 'my.app', "
        "not 'aws.guardduty'",
    }
    assert env.counted == []


def test_an_address_with_whitespace_is_rejected_not_stripped(env: Env) -> None:
    event = load(SSH)
    action = event["detail"]["service"]["action"]["networkConnectionAction"]
    action["remoteIpDetails"]["ipAddressV4"] = "185.220.101.46 "
    result = env.invoke(event)
    assert result["blocked"] == []
    ((rejected),) = result["rejected"]
    assert rejected["address"] == "185.220.101.46 "
    assert "surrounding whitespace" in rejected["reason"]
    assert env.ip_set(4) == []


def block_ip(env: Env) -> dict[str, Any]:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    return env.invoke(load("securityhub_block_ip.json"))


def test_a_block_ip_action_blocks_the_inbound_attackers_of_every_finding(env: Env) -> None:
    result = block_ip(env)

    assert result["status"] == "processed"
    assert result["action"] == "blockIp"
    assert [b["address"] for b in result["blocked"]] == [
        "185.220.101.46/32",
        "80.82.77.139/32",
        "45.155.205.233/32",
        "185.220.100.252/32",
        "2a01:4f8:c17:2a45::1/128",
    ]
    reasons = {r["address"]: r["reason"] for r in result["rejected"]}
    assert reasons == {
        "45.137.21.9": logic.OUTBOUND_ONLY_AT_NACL,
        "198.51.100.77": "documentation range (RFC 5737, RFC 3849, RFC 9637)",
        "10.20.30.40": "private address (RFC 1918)",
    }
    ignored = [f for f in result["findings"] if "ignored" in f]
    assert [f["type"] for f in ignored] == ["Recon:EC2/Portscan"]
    assert sorted(env.ip_set(4)) == sorted(
        ["185.220.101.46/32", "80.82.77.139/32", "45.155.205.233/32", "185.220.100.252/32"]
    )
    assert env.ip_set(6) == ["2a01:4f8:c17:2a45::1/128"]
    assert env.update_calls() == 2, "one update per IP version for the whole action"
    row = env.rows()["ip#185.220.101.46/32"]
    assert row["reason"] == {"S": "Security Hub action Block IP"}
    (sent,) = env.reports()
    assert sent["detail"]["severity"] == "HIGH"


def test_the_same_block_ip_event_twice_changes_nothing_the_second_time(env: Env) -> None:
    first = block_ip(env)
    env.reports()
    calls = len(env.counted)
    assert block_ip(env) == first
    assert [c for c in env.counted[calls:] if c.startswith("wafv2")] == []
    assert env.reports() == []


def test_a_custom_action_other_than_block_ip_is_rejected(env: Env) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    event = load("securityhub_findings_custom_action.json")
    result = env.invoke(event)
    assert result["status"] == "rejected"
    assert "is not the configured Block IP action" in result["reason"]
    assert env.counted == []


def test_without_a_configured_action_no_custom_action_is_acted_on(env: Env) -> None:
    env.monkeypatch.delenv("BLOCK_IP_ACTION_ARN", raising=False)
    result = env.invoke(load("securityhub_block_ip.json"))
    assert result["status"] == "rejected"
    assert "BLOCK_IP_ACTION_ARN is not set" in result["reason"]


def test_imported_security_hub_findings_are_not_acted_on(env: Env) -> None:
    result = env.invoke(load("securityhub_findings_imported.json"))
    assert result["status"] == "ignored"
    assert "reach this function directly" in result["reason"]
    assert env.counted == []


def test_a_block_ip_action_from_a_spoofed_source_is_rejected(env: Env) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    event = load("securityhub_block_ip.json")
    event["source"] = "aws.guardduty"
    result = env.invoke(event)
    assert result["status"] == "rejected"
    assert "not 'aws.securityhub'" in result["reason"]


def test_the_sweep_lifts_blocks_the_allowlist_now_covers_and_says_so(env: Env) -> None:
    manual_block(env, ["1.1.1.1", "9.9.9.9"], ttl=3600)
    env.set_env(ALLOWLIST_CIDRS='["1.1.1.0/24"]')
    env.reports()

    result = env.invoke({"action": "sweep"})

    assert result["lifted"] == [{"address": "1.1.1.1/32", "reason": "allow-listed by 1.1.1.0/24"}]
    assert env.ip_set(4) == ["9.9.9.9/32"]
    assert set(env.rows()) == {"ip#9.9.9.9/32"}
    (sent,) = env.reports()
    assert "Unblocked 1.1.1.1/32: allow-listed by 1.1.1.0/24" in sent["detail"]["actions"]
    again = env.invoke({"action": "sweep"})
    assert again["restored"] == [] and again["lifted"] == []
    assert env.ip_set(4) == ["9.9.9.9/32"]


def test_retries_stop_in_time_for_the_lambda_timeout(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refused update takes 6 s here (botocore's own retries of a slow WAF); ten
    attempts would take a minute, and the invocation has 30 s (CONTEXT)."""
    raised = fail_updates(
        env,
        monkeypatch,
        ["WAFOptimisticLockException"] * logic.MAX_ATTEMPTS,
        before=lambda: env.clock.advance(6),
    )

    with pytest.raises(logic.IpSetUpdateError, match="the next attempt would not finish in time"):
        env.invoke(load(SSH))

    elapsed = env.clock.at - START
    assert elapsed <= 30 - logic.DEADLINE_MARGIN_SECONDS, "stopped with the margin kept"
    assert len(raised) < logic.MAX_ATTEMPTS
    assert env.reports() == []


def test_findings_raised_by_our_own_threat_list_are_blocked_inbound_only(env: Env) -> None:
    """The threat_lists module's `.Custom` findings: the caller connecting in goes into
    the IP set; the destination our instance reached out to is for the NACL's egress."""
    inbound = env.invoke(load("gd_threat_list_custom_inbound.json"))
    assert [b["address"] for b in inbound["blocked"]] == ["185.220.101.7/32"]
    outbound = env.invoke(load("gd_threat_list_custom_outbound.json"))
    assert outbound["blocked"] == []
    assert outbound["rejected"] == [
        {"address": "91.92.240.5", "reason": logic.OUTBOUND_ONLY_AT_NACL}
    ]
    assert env.ip_set(4) == ["185.220.101.7/32"]
