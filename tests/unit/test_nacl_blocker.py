"""nacl_blocker against in-process moto: entries, capacity, races, drift, idempotency."""

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
from botocore.parsers import ResponseParserError
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st
from moto import mock_aws

from bundle.motoserver import InProcessContext
from functions.common import aws, blocking, lease, permissions
from functions.nacl_blocker import handler, logic
from functions.nacl_blocker.permissions import PERMISSIONS
from tests.helpers_blocking import HANDLED, START, FakeClock, malformed_event
from tests.helpers_permissions import record_calls
from tests.helpers_retries import lose_first_response

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SSH = "gd_waf_ssh_bruteforce_inbound.json"
RDP = "gd_waf_rdp_bruteforce_inbound.json"
PROBE = "gd_waf_port_probe.json"
IAM_V6 = "gd_waf_iam_malicious_ip_caller_ipv6.json"
SSH_SOURCE = "185.220.101.46/32"
PROBE_SOURCES = ["80.82.77.139/32", "45.155.205.233/32", "91.240.118.172/32"]
V6_SOURCE = "2a01:4f8:c17:2a45::1/128"
RANGE = range(71, 81)
# Entries around the reserved range that belong to someone else; every test checks at
# teardown that they are exactly as they were.
OUTSIDE = [
    (70, False, "203.0.113.0/24", "deny"),
    (81, False, "198.51.100.7/32", "deny"),
    (100, False, "0.0.0.0/0", "allow"),
    (100, True, "0.0.0.0/0", "allow"),
]


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


CONTEXT = InProcessContext.named("nacl-blocker")


@dataclass
class Env:
    """The deployed resources (created with plain boto3, so setup is not recorded)."""

    ec2: Any
    ddb: Any
    sqs: Any
    table: str
    queue_url: str
    acl: str
    subnet: str
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

    def entries(self, egress: bool = False, acl: str | None = None) -> dict[int, tuple[str, str]]:
        """Rule number -> (CIDR, action) of one direction."""
        found = self.ec2.describe_network_acls(NetworkAclIds=[acl or self.acl])["NetworkAcls"]
        return {
            e["RuleNumber"]: (e.get("CidrBlock") or e["Ipv6CidrBlock"], e["RuleAction"])
            for e in found[0]["Entries"]
            if e["Egress"] == egress
        }

    def in_range(self, egress: bool = False, acl: str | None = None) -> dict[int, str]:
        """Rule number -> CIDR of the deny entries in the reserved range."""
        return {
            n: cidr
            for n, (cidr, action) in self.entries(egress, acl).items()
            if n in RANGE and action == "deny"
        }

    def add_entry(self, number: int, cidr: str, egress: bool = False, action: str = "deny") -> None:
        block = "Ipv6CidrBlock" if ":" in cidr else "CidrBlock"
        self.ec2.create_network_acl_entry(
            NetworkAclId=self.acl,
            RuleNumber=number,
            Protocol="-1",
            RuleAction=action,
            Egress=egress,
            **{block: cidr},
        )

    def delete_entry(self, number: int, egress: bool = False) -> None:
        self.ec2.delete_network_acl_entry(NetworkAclId=self.acl, RuleNumber=number, Egress=egress)

    def items(self, prefix: str) -> dict[str, dict[str, Any]]:
        found = self.ddb.scan(TableName=self.table, ConsistentRead=True)["Items"]
        return {i["pk"]["S"]: i for i in found if i["pk"]["S"].startswith(prefix)}

    def rows(self) -> dict[str, dict[str, Any]]:
        return self.items(logic.ROW_PREFIX)

    def named(self, direction: str = "ingress") -> dict[int, str]:
        """Rule number -> CIDR of the rows of one direction that name an entry."""
        prefix = f"{logic.ROW_PREFIX}{self.acl}#{direction}#"
        return {
            int(row["rule_number"]["N"]): row["cidr"]["S"]
            for pk, row in self.rows().items()
            if pk.startswith(prefix) and "rule_number" in row
        }

    def leases(self) -> dict[str, dict[str, Any]]:
        return self.items(lease.LEASE_PREFIX)

    def row(self, cidr: str, direction: str = "ingress") -> dict[str, Any]:
        return self.rows()[f"entry#{self.acl}#{direction}#{cidr}"]

    def edit_row(self, cidr: str, expression: str, **values: Any) -> None:
        """Change an ingress row by hand (as a person, or a remover that stopped, would)."""
        self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"entry#{self.acl}#ingress#{cidr}"}},
            UpdateExpression=expression,
            **({"ExpressionAttributeValues": values} if values else {}),
        )

    def delete_item(self, pk: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": pk}})

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

    def count(self, operation: str) -> int:
        return self.counted.count(operation)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
        acl = ec2.create_network_acl(VpcId=vpc["VpcId"])["NetworkAcl"]["NetworkAclId"]
        subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.1.0/24")["Subnet"][
            "SubnetId"
        ]
        default = ec2.describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet]}]
        )["NetworkAcls"][0]
        association = next(
            a["NetworkAclAssociationId"] for a in default["Associations"] if a["SubnetId"] == subnet
        )
        ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=acl)
        for number, egress, cidr, action in OUTSIDE:
            ec2.create_network_acl_entry(
                NetworkAclId=acl,
                RuleNumber=number,
                Protocol="-1",
                RuleAction=action,
                Egress=egress,
                CidrBlock=cidr,
            )
        ddb.create_table(
            TableName="nacl-blocker-state",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_time_to_live(
            TableName="nacl-blocker-state",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        topic_arn = sns.create_topic(Name="remediation")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        for key, value in {
            "STATE_TABLE": "nacl-blocker-state",
            "NACL_IDS": json.dumps([acl]),
            "RULE_RANGE_START": str(RANGE.start),
            "RULE_RANGE_END": str(RANGE.stop - 1),
            "DIRECTIONS": '["ingress"]',
            "ALLOWLIST_CIDRS": '["52.94.0.0/22", "2600:1f18::/36"]',
            "NOTIFY_TOPIC_ARN": topic_arn,
            # The expiries these tests expect count in hours; the module's default is 12.
            "BLOCK_TTL_SECONDS": "3600",
        }.items():
            monkeypatch.setenv(key, value)
        for key in ("CAPACITY", "SEVERITY_THRESHOLD"):
            monkeypatch.delenv(key, raising=False)
        with record_calls() as calls:
            counted: list[str] = []

            def count(model: Any, **_: Any) -> None:
                counted.append(model.name)

            aws.session().events.register("before-call", count, unique_id="test-count")
            environment = Env(
                ec2=ec2,
                ddb=ddb,
                sqs=sqs,
                table="nacl-blocker-state",
                queue_url=queue_url,
                acl=acl,
                subnet=subnet,
                calls=calls,
                counted=counted,
                clock=FakeClock(),
                monkeypatch=monkeypatch,
            )
            yield environment
            aws.session().events.unregister("before-call", unique_id="test-count")
        outside = {
            (n, egress, cidr, action)
            for egress in (False, True)
            for n, (cidr, action) in environment.entries(egress).items()
            if n not in RANGE and n != 32767
        }
        assert outside == set(OUTSIDE), "an entry outside the reserved range changed"
        # Every path a test exercised must be covered by the declared permissions.
        assert calls <= permissions.actions(PERMISSIONS), calls - permissions.actions(PERMISSIONS)


def manual_block(env: Env, addresses: list[str], ttl: int, reason: str = "test") -> dict[str, Any]:
    return env.invoke(
        {"action": "block", "addresses": addresses, "ttl_seconds": ttl, "reason": reason}
    )


SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2025-06-15T16:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nacl-blocker-sweep"],
    "detail": {},
}


# --------------------------------------------------------------------------- blocking


def test_blocks_the_inbound_attacker_records_it_and_reports(env: Env) -> None:
    event = load(SSH)
    result = env.invoke(event)

    assert result["status"] == "processed"
    assert result["networkAcls"] == [env.acl]
    assert result["blocked"] == [
        {
            "address": SSH_SOURCE,
            "networkAclId": env.acl,
            "direction": "ingress",
            "ruleNumber": 71,
            "expiresAt": "2025-06-15T16:06:40Z",
        }
    ]
    assert env.in_range() == {71: SSH_SOURCE}
    assert env.in_range(egress=True) == {}
    entry = next(
        e
        for e in env.ec2.describe_network_acls(NetworkAclIds=[env.acl])["NetworkAcls"][0]["Entries"]
        if e["RuleNumber"] == 71
    )
    assert (entry["Protocol"], entry["RuleAction"], entry["Egress"]) == ("-1", "deny", False)

    row = env.row(SSH_SOURCE)
    assert row["blocked_until"] == {"N": str(int(START) + 3600)}
    assert "expires_at" not in row  # TTL must never delete the proof that an entry is ours
    assert row["rule_number"] == {"N": "71"}
    assert row["first_seen"] == row["last_seen"] == {"N": str(int(START))}
    assert row["hit_count"] == {"N": "1"}
    assert row["finding_ids"] == {"SS": [event["detail"]["id"]]}
    assert row["reason"] == {"S": "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce"}
    assert env.leases() == {}, "the ACL's lease is released when the invocation is done"

    (sent,) = env.reports()
    assert sent["source"] == "playbook.nacl_blocker"
    assert sent["detail"]["severity"] == "LOW", "GuardDuty rates an inbound SSH brute force Low"
    assert sent["detail"]["findingId"] == event["detail"]["id"]
    assert sent["detail"]["actions"] == [
        f"Denied {SSH_SOURCE} in {env.acl} ingress as rule 71 until 2025-06-15T16:06:40Z"
    ]
    assert f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-acl/{env.acl}" in sent["resources"]
    assert event["detail"]["arn"] in sent["resources"]


def test_ipv6_goes_in_as_ipv6_cidr_block_in_both_directions(env: Env) -> None:
    env.set_env(DIRECTIONS='["ingress", "egress"]')
    env.invoke(load(SSH))
    result = env.invoke(load(IAM_V6))

    assert [(b["direction"], b["ruleNumber"]) for b in result["blocked"]] == [
        ("ingress", 72),
        ("egress", 72),
    ]
    assert env.in_range() == {71: SSH_SOURCE, 72: V6_SOURCE}
    assert env.in_range(egress=True) == {71: SSH_SOURCE, 72: V6_SOURCE}
    entries = env.ec2.describe_network_acls(NetworkAclIds=[env.acl])["NetworkAcls"][0]["Entries"]
    v6 = [e for e in entries if e["RuleNumber"] == 72]
    assert all("Ipv6CidrBlock" in e and "CidrBlock" not in e for e in v6)
    assert {f"entry#{env.acl}#egress#{V6_SOURCE}", f"entry#{env.acl}#ingress#{V6_SOURCE}"} <= set(
        env.rows()
    )


def test_rule_numbers_are_unique_in_range_and_skip_foreign_entries(env: Env) -> None:
    env.add_entry(72, "9.9.9.9/32")  # someone else's deny inside our range

    result = env.invoke(load(PROBE))

    assert [(b["address"], b["ruleNumber"]) for b in result["blocked"]] == [
        (PROBE_SOURCES[0], 71),
        (PROBE_SOURCES[1], 73),
        (PROBE_SOURCES[2], 74),
    ]
    assert env.in_range() == {
        71: PROBE_SOURCES[0],
        72: "9.9.9.9/32",
        73: PROBE_SOURCES[1],
        74: PROBE_SOURCES[2],
    }


def test_allow_listed_and_non_global_addresses_are_rejected_with_reasons(env: Env) -> None:
    env.set_env(ALLOWLIST_CIDRS="80.82.77.0/24, 2600:1f18::/36")
    event = load(PROBE)
    details = event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    details[1]["remoteIpDetails"]["ipAddressV4"] = "10.20.30.40"
    details.append({"remoteIpDetails": {"ipAddressV6": "2600:1f18:abc::9"}})

    result = env.invoke(event)

    assert env.in_range() == {71: "91.240.118.172/32"}
    assert result["rejected"] == [
        {"address": "80.82.77.139", "reason": "allow-listed by 80.82.77.0/24"},
        {"address": "10.20.30.40", "reason": "private address (RFC 1918)"},
        {"address": "2600:1f18:abc::9", "reason": "allow-listed by 2600:1f18::/36"},
    ]
    (sent,) = env.reports()
    assert "Did not block 10.20.30.40: private address (RFC 1918)" in sent["detail"]["actions"]
    assert set(env.rows()) == {f"entry#{env.acl}#ingress#91.240.118.172/32"}


def test_nothing_blockable_means_no_acl_write_but_people_are_told(env: Env) -> None:
    env.set_env(ALLOWLIST_CIDRS="185.220.101.0/24")
    result = env.invoke(load(SSH))

    assert result["blocked"] == []
    assert env.count("CreateNetworkAclEntry") == 0
    assert env.rows() == {}
    (sent,) = env.reports()
    assert sent["detail"]["title"].startswith("Denied 0 address(es)")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(type="Recon:EC2/Portscan"), "Recon:EC2/Portscan is not ours to block"),
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


def test_outbound_brute_force_blocks_nothing(env: Env) -> None:
    env.set_env(SEVERITY_THRESHOLD="1")
    result = env.invoke(load("gd_waf_ssh_bruteforce_outbound.json"))

    assert result["status"] == "processed"
    assert result["blocked"] == [] and result["rejected"] == []
    assert env.count("CreateNetworkAclEntry") == 0
    assert env.reports() == []


# --------------------------------------------------------------------------- target ACLs


def test_without_nacl_ids_the_acl_of_the_instances_subnet_is_used(env: Env) -> None:
    env.set_env(NACL_IDS="[]")
    instance = env.ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=env.subnet
    )["Instances"][0]
    event = load(SSH)
    details = event["detail"]["resource"]["instanceDetails"]
    details["instanceId"] = instance["InstanceId"]
    details["networkInterfaces"][0]["subnetId"] = instance["NetworkInterfaces"][0]["SubnetId"]

    result = env.invoke(event)

    assert result["networkAcls"] == [env.acl]
    assert env.in_range() == {71: SSH_SOURCE}
    assert "ec2:DescribeInstances" not in env.calls


def test_without_nacl_ids_a_finding_without_a_subnet_is_rejected(env: Env) -> None:
    env.set_env(NACL_IDS="[]")
    result = env.invoke(load(IAM_V6))

    assert result["status"] == "rejected"
    assert "NACL_IDS is empty and the finding names no subnet" in result["reason"]
    assert env.counted == []


def test_without_nacl_ids_a_subnet_unknown_here_is_rejected(env: Env) -> None:
    env.set_env(NACL_IDS="[]")
    result = env.invoke(load(SSH))  # subnet-4975b475 exists in no account moto knows

    assert result["status"] == "rejected"
    assert "no network ACL is associated with subnet(s) subnet-4975b475" in result["reason"]
    assert env.count("CreateNetworkAclEntry") == 0


def test_without_nacl_ids_a_direct_block_is_rejected(env: Env) -> None:
    env.set_env(NACL_IDS="")
    result = manual_block(env, ["1.1.1.1"], ttl=600)
    assert result["status"] == "rejected"
    assert "NACL_IDS is empty" in result["reason"]
    assert env.counted == []


def test_a_configured_acl_that_does_not_exist_is_reported_not_raised(env: Env) -> None:
    env.set_env(NACL_IDS=json.dumps([env.acl, "acl-0123456789abcdef0"]))
    result = env.invoke(load(SSH))

    assert [b["networkAclId"] for b in result["blocked"]] == [env.acl]
    assert result["rejected"] == [
        {"address": SSH_SOURCE, "reason": "network ACL acl-0123456789abcdef0 does not exist"}
    ]


# --------------------------------------------------------------------------- capacity


def test_at_capacity_the_entry_expiring_first_is_evicted(env: Env) -> None:
    env.set_env(CAPACITY="2")
    manual_block(env, ["1.0.0.1"], ttl=7200)
    manual_block(env, ["1.0.0.2"], ttl=300)  # expires first
    env.reports()

    result = env.invoke(load(SSH))

    assert result["evicted"] == [
        {"address": "1.0.0.2/32", "networkAclId": env.acl, "direction": "ingress", "ruleNumber": 72}
    ]
    assert env.in_range() == {71: "1.0.0.1/32", 72: SSH_SOURCE}
    assert f"entry#{env.acl}#ingress#1.0.0.2/32" not in env.rows()
    # The evicted number went straight to the evicting address.
    assert env.named() == {71: "1.0.0.1/32", 72: SSH_SOURCE}
    (sent,) = env.reports()
    assert sent["detail"]["actions"][-1] == (
        f"Evicted 1.0.0.2/32 (rule 72) from {env.acl} ingress to stay within CAPACITY 2 and "
        "the range 71-80: it was due to expire first (2025-06-15T15:11:40Z)"
    )


def test_a_request_larger_than_capacity_blocks_what_fits(env: Env) -> None:
    env.set_env(CAPACITY="2")
    result = env.invoke(load(PROBE))

    assert [b["address"] for b in result["blocked"]] == PROBE_SOURCES[:2]
    assert result["rejected"] == [
        {
            "address": PROBE_SOURCES[2],
            "reason": "one request may block at most 2 addresses per network ACL (CAPACITY)",
        }
    ]
    assert result["evicted"] == []
    assert env.in_range() == {71: PROBE_SOURCES[0], 72: PROBE_SOURCES[1]}


def test_a_range_full_of_foreign_entries_evicts_ours_or_rejects(env: Env) -> None:
    env.set_env(RULE_RANGE_END="73")
    env.add_entry(72, "9.9.9.9/32")
    env.add_entry(73, "8.8.8.8/32", action="allow")
    manual_block(env, ["1.0.0.1"], ttl=600)

    evicting = env.invoke(load(SSH))
    assert evicting["evicted"] == [
        {"address": "1.0.0.1/32", "networkAclId": env.acl, "direction": "ingress", "ruleNumber": 71}
    ]
    assert env.in_range() == {71: SSH_SOURCE, 72: "9.9.9.9/32"}

    # Two addresses in one request never evict each other: the second has no room.
    env.reports()
    rejecting = manual_block(env, ["1.0.0.3", "1.0.0.4"], ttl=600)
    assert [b["address"] for b in rejecting["blocked"]] == ["1.0.0.3/32"]
    (rejected,) = rejecting["rejected"]
    assert rejected["address"] == "1.0.0.4/32"
    assert "no free rule number in the reserved range 71-73" in rejected["reason"]
    assert "2 number(s) there are held by entries it did not create" in rejected["reason"]
    assert f"entry#{env.acl}#ingress#1.0.0.4/32" not in env.rows()
    assert env.entries()[73] == ("8.8.8.8/32", "allow")


# --------------------------------------------------------------------------- races


def inject_before_create(
    env: Env, monkeypatch: pytest.MonkeyPatch, action: Callable[..., None]
) -> list[int]:
    """Run ``action`` with the first CreateNetworkAclEntry's arguments, just before it."""
    client = aws.client("ec2")
    real_create = client.create_network_acl_entry
    seen: list[int] = []

    def create_network_acl_entry(**kwargs: Any) -> Any:
        if not seen:
            seen.append(kwargs["RuleNumber"])
            action(**kwargs)
        return real_create(**kwargs)

    monkeypatch.setattr(client, "create_network_acl_entry", create_network_acl_entry)
    return seen


def test_a_number_taken_between_read_and_create_is_retried_on_another(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = inject_before_create(
        env, monkeypatch, lambda **kw: env.add_entry(kw["RuleNumber"], "9.9.9.9/32")
    )

    result = env.invoke(load(SSH))

    assert raced == [71]
    assert [b["ruleNumber"] for b in result["blocked"]] == [72]
    assert env.in_range() == {71: "9.9.9.9/32", 72: SSH_SOURCE}
    assert env.count("CreateNetworkAclEntry") == 2
    assert len(env.clock.slept) == 1
    assert 0 <= env.clock.slept[0] <= blocking.BACKOFF_BASE_SECONDS
    assert env.row(SSH_SOURCE)["rule_number"] == {"N": "72"}


def test_an_unblock_while_a_block_holds_the_lease_waits_and_is_retried(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A concurrent unblock arrives while the block holds the ACL's lease (between choosing
    # the number and creating the entry): it waits for the lease, and when the holder
    # keeps it longer than it may wait, it raises so that Lambda delivers it again.
    refused: list[str] = []

    def unblock(**_: Any) -> None:
        with pytest.raises(lease.LeaseBusy, match=f"network ACL {env.acl} is being written") as exc:
            env.invoke({"action": "unblock", "addresses": ["185.220.101.46"], "reason": "x"})
        refused.append(str(exc.value))

    inject_before_create(env, monkeypatch, unblock)

    result = env.invoke(load(SSH))

    assert refused and f"after {lease.LEASE_ATTEMPTS} attempts" in refused[0]
    assert [b["ruleNumber"] for b in result["blocked"]] == [71], "the holder was not disturbed"
    assert env.in_range() == {71: SSH_SOURCE}
    assert env.leases() == {}
    # Lambda's retry of the unblock finds the lease free.
    retried = env.invoke({"action": "unblock", "addresses": ["185.220.101.46"], "reason": "x"})
    assert retried["unblocked"][0]["ruleNumbers"] == [71]
    assert env.in_range() == {} and env.rows() == {}


def test_a_create_whose_response_was_lost_is_read_back_as_created(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retried create answers NetworkAclEntryAlreadyExists for its own entry. Taking
    the number for someone else's would leave a second deny of the same address."""
    answered = lose_first_response(monkeypatch, aws.client("ec2"), "create_network_acl_entry")

    result = env.invoke(load(SSH))

    assert answered == ["NetworkAclEntryAlreadyExists"]
    assert [(b["ruleNumber"]) for b in result["blocked"]] == [71]
    assert env.clock.slept == []
    assert env.in_range() == {71: SSH_SOURCE}
    assert env.named() == {71: SSH_SOURCE}


def test_a_lease_put_whose_response_was_lost_is_still_held(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retried conditional put of the lease fails on the lease it wrote itself; that is
    this invocation holding it, not another writer (no wait, no LeaseBusy)."""
    answered = lose_first_response(
        monkeypatch,
        aws.client("dynamodb"),
        "put_item",
        lambda kw: kw["Item"]["pk"]["S"].startswith(lease.LEASE_PREFIX),
    )

    result = env.invoke(load(SSH))

    assert answered == ["ConditionalCheckFailedException"]
    assert [b["ruleNumber"] for b in result["blocked"]] == [71]
    assert env.clock.slept == []
    assert env.leases() == {}


# --------------------------------------------------------------------------- the lease


def hold_lease(env: Env, owner: str = "another-invocation", seconds: int | None = None) -> None:
    """Another invocation holds the ACL's lease, as its conditional put leaves it."""
    until = int(env.clock.at) + (lease.LEASE_SECONDS if seconds is None else seconds)
    env.ddb.put_item(
        TableName=env.table,
        Item={
            "pk": {"S": f"{lease.LEASE_PREFIX}{env.acl}"},
            "owner": {"S": owner},
            "expires_at": {"N": str(until)},
        },
    )


def test_a_held_lease_makes_a_writer_wait_then_raise_for_a_retry(env: Env) -> None:
    hold_lease(env)

    with pytest.raises(lease.LeaseBusy, match="Lambda retries the event"):
        env.invoke(load(SSH))

    assert env.count("CreateNetworkAclEntry") == 0 and env.rows() == {}
    assert all(0 <= s <= lease.LEASE_BACKOFF_CAP_SECONDS for s in env.clock.slept)
    assert env.leases()[f"lease#{env.acl}"]["owner"] == {"S": "another-invocation"}


def test_a_second_writer_takes_an_expired_lease(env: Env) -> None:
    hold_lease(env, seconds=10)  # its holder died (a Lambda timeout) ten seconds ago
    env.clock.advance(11)

    result = env.invoke(load(SSH))

    assert [b["ruleNumber"] for b in result["blocked"]] == [71]
    assert env.leases() == {}, "taken over, then released"


def test_a_lease_is_released_when_the_work_inside_it_raises(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = aws.client("ec2")
    real_create = client.create_network_acl_entry

    def broken(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}},
            "CreateNetworkAclEntry",
        )

    monkeypatch.setattr(client, "create_network_acl_entry", broken)
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        env.invoke(load(SSH))
    assert env.leases() == {}, "released in the finally, not left to expire"

    monkeypatch.setattr(client, "create_network_acl_entry", real_create)
    assert [b["ruleNumber"] for b in env.invoke(load(SSH))["blocked"]] == [71]
    assert env.in_range() == {71: SSH_SOURCE}


def test_a_holder_that_outlives_its_lease_writes_nothing_more_and_nothing_is_lost(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (two addresses) pauses just before its first create for longer than the lease; B
    takes the expired lease and blocks the same address. A's create then lands on B's entry
    (the number A's row named), and A's next write is refused: one entry, one row, no
    duplicate."""
    other: list[dict[str, Any]] = []

    def outlive(**_: Any) -> None:
        env.clock.advance(lease.LEASE_SECONDS + 1)
        other.append(env.invoke(load(SSH)))

    inject_before_create(env, monkeypatch, outlive)

    with pytest.raises(lease.LeaseLost, match=f"the lease of {env.acl} expired"):
        manual_block(env, [SSH_SOURCE.removesuffix("/32"), "1.0.0.9"], ttl=600)

    assert [b["ruleNumber"] for b in other[0]["blocked"]] == [71]
    assert env.in_range() == env.named() == {71: SSH_SOURCE}, "one entry: A's create met B's"
    assert set(env.rows()) == {f"entry#{env.acl}#ingress#{SSH_SOURCE}"}
    assert env.leases() == {}
    # Lambda retries A's event: the first block is in place already.
    retried = manual_block(env, [SSH_SOURCE.removesuffix("/32"), "1.0.0.9"], ttl=600)
    assert [(b["ruleNumber"]) for b in retried["blocked"]] == [71, 72]
    assert env.count("CreateNetworkAclEntry") == 3


@pytest.mark.parametrize(
    ("operation", "matches"),
    [
        ("update_item", lambda kw: kw["ExpressionAttributeNames"] == {"#name": "blocked_until"}),
        ("delete_item", lambda kw: kw["Key"]["pk"]["S"].startswith("entry#")),
    ],
    ids=["mark-ended", "delete-row"],
)
def test_an_eviction_whose_row_writes_were_retried_after_they_landed_goes_on(
    env: Env, monkeypatch: pytest.MonkeyPatch, operation: str, matches: Any
) -> None:
    """The evicted row is marked ended and deleted by writes that a retry may repeat: the
    repeat changes nothing (no back-off, no error) and the report says why it went."""
    env.set_env(CAPACITY="2")
    manual_block(env, ["1.0.0.1"], ttl=7200)
    manual_block(env, ["1.0.0.2"], ttl=300)
    env.reports()
    answered = lose_first_response(monkeypatch, aws.client("dynamodb"), operation, matches)
    result = env.invoke(load(SSH))

    assert answered == ["ok"]
    assert env.clock.slept == []
    assert [e["address"] for e in result["evicted"]] == ["1.0.0.2/32"]
    assert env.in_range() == {71: "1.0.0.1/32", 72: SSH_SOURCE}
    (sent,) = env.reports()
    assert sent["detail"]["actions"][-1].endswith(
        "it was due to expire first (2025-06-15T15:11:40Z)"
    )


@pytest.mark.parametrize(
    "error",
    [
        ClientError(
            {"Error": {"Code": "InvalidNetworkAclEntry.NotFound", "Message": "retry"}},
            "DeleteNetworkAclEntry",
        ),
        # moto's answer to deleting a missing entry: an HTML 500 botocore cannot parse.
        ResponseParserError("Unable to parse response, invalid XML received"),
    ],
    ids=["aws-not-found", "moto-html-500"],
)
def test_a_delete_whose_retry_errors_after_it_succeeded_counts_as_done(
    env: Env, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """The delete lands and the retried request errors. The entry is gone, so the unblock
    is complete rather than half-done (a rule item left for the next sweep)."""
    manual_block(env, ["1.0.0.1"], ttl=600)
    client = aws.client("ec2")
    real_delete = client.delete_network_acl_entry

    def delete_then_error(**kwargs: Any) -> Any:
        real_delete(**kwargs)
        raise error

    def only_error(**_: Any) -> Any:
        raise error

    monkeypatch.setattr(client, "delete_network_acl_entry", delete_then_error)
    result = env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "x"})

    assert result["unblocked"][0]["ruleNumbers"] == [71]
    assert env.in_range() == {}
    assert env.rows() == {}

    # An error while the entry is still there is not swallowed.
    manual_block(env, ["1.0.0.1"], ttl=600)
    monkeypatch.setattr(client, "delete_network_acl_entry", only_error)
    with pytest.raises(type(error)):
        env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "x"})
    assert env.in_range() == {71: "1.0.0.1/32"}


def test_placement_that_never_wins_raises_and_a_redelivery_then_works(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = aws.client("ec2")
    real_create = client.create_network_acl_entry
    foreign: list[int] = []

    def always_taken(**kwargs: Any) -> Any:
        # Someone else's entry keeps landing on whichever number we picked.
        if foreign:
            env.delete_entry(foreign.pop())
        env.add_entry(kwargs["RuleNumber"], "9.9.9.9/32")
        foreign.append(kwargs["RuleNumber"])
        return real_create(**kwargs)

    monkeypatch.setattr(client, "create_network_acl_entry", always_taken)
    event = load(SSH)
    with pytest.raises(logic.PlacementError, match=f"after {logic.MAX_ATTEMPTS} attempts"):
        env.invoke(event)
    assert len(env.clock.slept) == logic.MAX_ATTEMPTS - 1
    assert env.reports() == []

    # Powertools dropped the in-progress record, so Lambda's retry really retries.
    monkeypatch.setattr(client, "create_network_acl_entry", real_create)
    result = env.invoke(event)
    (blocked,) = result["blocked"]
    assert env.in_range() == {foreign[0]: "9.9.9.9/32", blocked["ruleNumber"]: SSH_SOURCE}


# --------------------------------------------------------------------------- idempotency


def test_the_same_delivery_twice_changes_nothing_the_second_time(env: Env) -> None:
    event = load(PROBE)
    first = env.invoke(event)
    assert env.count("CreateNetworkAclEntry") == 3
    assert len(env.reports()) == 1
    rows_before = env.rows()

    env.clock.advance(60)
    second = env.invoke(copy.deepcopy(event))

    assert second == first
    assert env.count("CreateNetworkAclEntry") == 3
    assert env.reports() == []
    assert env.rows() == rows_before


def test_an_updated_finding_extends_the_block_without_a_second_entry(env: Env) -> None:
    event = load(SSH)
    env.invoke(event)
    env.clock.advance(1800)
    event["detail"]["updatedAt"] = "2025-03-14T16:21:07.402Z"

    result = env.invoke(event)

    assert result["blocked"][0]["expiresAt"] == "2025-06-15T16:36:40Z"
    assert env.row(SSH_SOURCE)["hit_count"] == {"N": "2"}
    assert env.count("CreateNetworkAclEntry") == 1
    assert env.in_range() == {71: SSH_SOURCE}
    assert "already denied" in env.reports()[-1]["detail"]["actions"][0]


# --------------------------------------------------------------------------- direct calls


def test_manual_block_and_unblock(env: Env) -> None:
    env.set_env(DIRECTIONS='["ingress", "egress"]')
    result = manual_block(
        env, ["1.1.1.1", "2a01:4f8:c17:2a45::1", "10.0.0.1", "1.2.3.0/24", "junk"], ttl=600
    )

    assert {b["address"] for b in result["blocked"]} == {"1.1.1.1/32", V6_SOURCE}
    assert [r["address"] for r in result["rejected"]] == ["1.2.3.0/24", "junk", "10.0.0.1"]
    assert "finding_ids" not in env.row("1.1.1.1/32")
    assert env.in_range(egress=True) == {71: "1.1.1.1/32", 72: V6_SOURCE}
    (sent,) = env.reports()
    assert sent["detail"]["severity"] == "INFO"

    result = env.invoke(
        {"action": "unblock", "addresses": ["1.1.1.1", "9.9.9.9"], "reason": "false positive"}
    )

    assert [(u["direction"], u["ruleNumbers"]) for u in result["unblocked"]] == [
        ("egress", [71]),
        ("ingress", [71]),
    ]
    assert result["notBlocked"] == ["9.9.9.9/32"]
    assert env.in_range() == env.in_range(egress=True) == {72: V6_SOURCE}
    assert env.named() == env.named("egress") == {72: V6_SOURCE}
    (sent,) = env.reports()
    assert sent["detail"]["actions"] == [
        f"Unblocked 1.1.1.1/32 in {env.acl} egress (removed rule 71)",
        f"Unblocked 1.1.1.1/32 in {env.acl} ingress (removed rule 71)",
        "9.9.9.9/32 was not blocked",
    ]


def test_manual_block_without_ttl_uses_the_configured_one(env: Env) -> None:
    env.set_env(BLOCK_TTL_SECONDS="900")
    result = env.invoke({"action": "block", "addresses": ["1.1.1.1"], "reason": "test"})
    assert result["blocked"][0]["expiresAt"] == "2025-06-15T15:21:40Z"


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"action": "block", "addresses": ["1.1.1.1"]}, "reason"),
        ({"action": "block", "addresses": [], "reason": "x"}, "addresses"),
        ({"action": "block", "addresses": ["1.1.1.1"], "reason": "x", "ttl_seconds": 5}, "ttl"),
        ({"action": "block", "addresses": ["1.1.1.1"], "reason": "x", "extra": 1}, "extra"),
        ({"action": "unblock", "addresses": ["1.1.1.1"]}, "reason"),
        ({"action": "explode"}, "action"),
        (
            {"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {"id": "x"}},
            "invalid GuardDuty",
        ),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "invalid scheduled event"),
        ({"hello": "world"}, "unrecognised event"),
        ([1, 2, 3], "expected a JSON object"),
    ],
)
def test_bad_input_gets_a_clear_rejection(env: Env, event: Any, problem: str) -> None:
    result = env.invoke(event)
    assert result["status"] == "rejected"
    assert problem in result["reason"]
    assert env.counted == []


# --------------------------------------------------------------------------- configuration

BASE_ENV = {"STATE_TABLE": "t", "RULE_RANGE_START": "71", "RULE_RANGE_END": "80"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STATE_TABLE", "", "STATE_TABLE is required"),
        ("RULE_RANGE_START", "", "RULE_RANGE_START is required"),
        ("RULE_RANGE_START", "0", "RULE_RANGE_START must be 1..32766"),
        ("RULE_RANGE_END", "32767", "RULE_RANGE_END must be 71..32766"),
        ("RULE_RANGE_END", "70", "RULE_RANGE_END must be 71..32766"),
        ("RULE_RANGE_END", "eighty", "RULE_RANGE_END must be a number"),
        ("CAPACITY", "0", "CAPACITY must be 1..40"),
        ("CAPACITY", "41", "CAPACITY must be 1..40"),
        ("NACL_IDS", "acl-12345678", "NACL_IDS is not valid JSON"),
        ("NACL_IDS", '{"id": "acl-12345678"}', "NACL_IDS must be a JSON list of strings"),
        ("NACL_IDS", '["sg-12345678"]', "'sg-12345678' is not a network ACL id"),
        ("NACL_IDS", '["acl-12345678", "acl-12345678"]', "lists a network ACL twice"),
        ("DIRECTIONS", '["inbound"]', "DIRECTIONS must be"),
        ("DIRECTIONS", "[]", "DIRECTIONS must be"),
        ("DIRECTIONS", '["ingress", "ingress"]', "DIRECTIONS must be"),
        ("BLOCK_TTL_SECONDS", "10", "BLOCK_TTL_SECONDS must be"),
        ("SEVERITY_THRESHOLD", "11", "SEVERITY_THRESHOLD must be"),
        ("ALLOWLIST_CIDRS", '["10.0.0.1/8"]', "ALLOWLIST_CIDRS: allowlist entry '10.0.0.1/8'"),
    ],
)
def test_configuration_is_validated(name: str, value: str, message: str) -> None:
    with pytest.raises(logic.ConfigError, match=re.escape(message)):
        logic.Config.from_env({**BASE_ENV, name: value})


def test_configuration_defaults() -> None:
    config = logic.Config.from_env(BASE_ENV)
    assert config.nacl_ids == ()
    assert (config.capacity, config.directions, config.block_ttl_seconds) == (
        10,
        ("ingress",),
        43200,
    )
    assert (config.severity_threshold, config.notify_topic_arn, config.allowlist) == (1.0, "", ())
    assert config.rule_numbers == range(71, 81)
    both = logic.Config.from_env({**BASE_ENV, "DIRECTIONS": '["ingress", "egress"]'})
    assert both.directions == ("ingress", "egress")


def test_no_topic_means_no_report(env: Env) -> None:
    env.set_env(NOTIFY_TOPIC_ARN="")
    result = env.invoke(load(SSH))
    assert result["notified"] is False
    assert env.in_range() == {71: SSH_SOURCE}
    assert "sns:Publish" not in env.calls


# --------------------------------------------------------------------------- sweeper


def test_sweep_removes_what_expired_even_if_ttl_has_not_deleted_the_row(env: Env) -> None:
    env.set_env(DIRECTIONS='["ingress", "egress"]')
    manual_block(env, ["1.0.0.1", "2a01:4f8::1"], ttl=600)
    manual_block(env, ["1.0.0.2"], ttl=7200)
    env.reports()

    env.clock.advance(599)
    assert env.invoke(SCHEDULED)["expired"] == []

    env.clock.advance(1)  # blocked_until <= now: expired
    result = env.invoke(SCHEDULED)

    assert sorted((e["address"], e["direction"], e["ruleNumber"]) for e in result["expired"]) == [
        ("1.0.0.1/32", "egress", 71),
        ("1.0.0.1/32", "ingress", 71),
        ("2a01:4f8::1/128", "egress", 72),
        ("2a01:4f8::1/128", "ingress", 72),
    ]
    assert env.in_range() == env.in_range(egress=True) == {73: "1.0.0.2/32"}
    assert {pk.rsplit("#", 1)[1] for pk in env.rows()} == {"1.0.0.2/32"}
    assert env.named() == env.named("egress") == {73: "1.0.0.2/32"}
    (sent,) = env.reports()
    assert (
        f"Unblocked 1.0.0.1/32 in {env.acl} ingress (removed rule 71): its block expired"
        in (sent["detail"]["actions"])
    )


def test_sweep_with_nothing_to_do_sends_nothing(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.reports()
    writes = env.count("CreateNetworkAclEntry") + env.count("DeleteNetworkAclEntry")

    result = env.invoke({"action": "sweep"})

    assert result["status"] == "swept"
    assert result["notified"] is False
    assert env.count("CreateNetworkAclEntry") + env.count("DeleteNetworkAclEntry") == writes
    assert env.reports() == []


def test_sweep_recreates_an_entry_deleted_by_hand(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    env.reports()
    env.delete_entry(71)
    env.delete_entry(72)
    env.add_entry(72, "9.9.9.9/32")  # and someone took one of the numbers

    result = env.invoke(SCHEDULED)

    assert [(r["address"], r["ruleNumber"]) for r in result["restored"]] == [
        ("1.0.0.1/32", 71),
        ("1.0.0.2/32", 73),
    ]
    assert env.in_range() == {71: "1.0.0.1/32", 72: "9.9.9.9/32", 73: "1.0.0.2/32"}
    assert [f["ruleNumber"] for f in result["foreign"]] == [72]
    (sent,) = env.reports()
    assert (
        f"Re-created rule 73 for 1.0.0.2/32 in {env.acl} ingress: its block is recorded but "
        "the entry was missing"
    ) in sent["detail"]["actions"]


def test_a_lost_row_leaves_its_entry_to_the_orphan_grace_and_a_reblock_takes_it_back(
    env: Env,
) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    env.delete_item(f"entry#{env.acl}#ingress#1.0.0.2/32")  # by hand: nothing else deletes rows

    result = env.invoke(SCHEDULED)

    assert [(f["ruleNumber"], f.get("removeAfter")) for f in result["foreign"]] == [
        (72, "2025-06-16T15:06:40Z")
    ]
    assert env.in_range() == {71: "1.0.0.1/32", 72: "1.0.0.2/32"}
    # Blocked again before the grace ends: the deny is taken back, not doubled.
    again = manual_block(env, ["1.0.0.2"], ttl=600)
    assert [(b["ruleNumber"], b["address"]) for b in again["blocked"]] == [(72, "1.0.0.2/32")]
    assert env.count("CreateNetworkAclEntry") == 2
    assert env.named() == env.in_range()
    assert env.items(logic.ORPHAN_PREFIX) == {}, "its sighting goes: a later loss starts anew"
    assert env.invoke(SCHEDULED)["foreign"] == []


def test_a_removal_that_stopped_half_way_is_finished_by_the_sweep(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    # A remover marked the row ended, then its Lambda timed out before the entry went.
    env.edit_row(
        "1.0.0.2/32", "SET blocked_until = :now", **{":now": {"N": str(int(env.clock.at))}}
    )
    # Until the sweep comes, the row still proves the entry ours: no new block takes its
    # number, nothing calls it foreign, and nothing re-creates it.
    assert manual_block(env, ["1.0.0.3"], ttl=600)["blocked"][0]["ruleNumber"] == 73

    result = env.invoke(SCHEDULED)

    assert [(r["address"], r["ruleNumber"]) for r in result["expired"]] == [("1.0.0.2/32", 72)]
    assert result["foreign"] == [] and result["restored"] == []
    assert env.in_range() == env.named() == {71: "1.0.0.1/32", 73: "1.0.0.3/32"}


def test_an_unblock_that_dies_before_deleting_its_row_is_not_undone_by_the_sweep(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is marked ended before its entry goes, so a remover that stops between the
    entry and the row leaves an ended row: the sweep finishes it instead of re-creating a
    deny that an operator lifted."""
    manual_block(env, ["1.0.0.1"], ttl=3600)
    client = aws.client("dynamodb")
    real_delete = client.delete_item

    def timed_out(**request: Any) -> Any:
        if request["Key"]["pk"]["S"].startswith(logic.ROW_PREFIX):
            raise TimeoutError("the Lambda ran out of time here")
        return real_delete(**request)

    monkeypatch.setattr(client, "delete_item", timed_out)
    with pytest.raises(TimeoutError):
        env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "x"})
    monkeypatch.setattr(client, "delete_item", real_delete)
    assert env.in_range() == {} and len(env.rows()) == 1

    result = env.invoke(SCHEDULED)

    assert result["restored"] == []
    assert [e["address"] for e in result["expired"]] == ["1.0.0.1/32"]
    assert env.in_range() == {} and env.rows() == {}


def test_sweep_takes_back_an_entry_whose_rows_number_was_lost(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    env.edit_row("1.0.0.1/32", "REMOVE rule_number")

    result = env.invoke(SCHEDULED)

    assert result["foreign"] == [] and result["restored"] == []
    assert env.in_range() == env.named() == {71: "1.0.0.1/32"}
    env.clock.advance(600)
    assert [e["ruleNumber"] for e in env.invoke(SCHEDULED)["expired"]] == [71]
    assert env.in_range() == {}


def test_an_emptied_table_leaves_every_entry_alone_and_reports_them(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    env.add_entry(75, "9.9.9.9/32", action="allow")
    for pk in env.rows():
        env.delete_item(pk)
    env.reports()

    for _ in range(2):
        result = env.invoke(SCHEDULED)

        assert env.in_range() == {71: "1.0.0.1/32", 72: "1.0.0.2/32"}
        assert [(f["ruleNumber"], f["cidr"], f["ruleAction"]) for f in result["foreign"]] == [
            (71, "1.0.0.1/32", "deny"),
            (72, "1.0.0.2/32", "deny"),
            (75, "9.9.9.9/32", "allow"),
        ]
        (sent,) = env.reports()  # once per sweep, every sweep
        assert sent["detail"]["actions"][0] == (
            f"Left rule 71 (deny 1.0.0.1/32) in {env.acl} ingress alone: it is inside the "
            "reserved range 71-80 but this remediator did not create it, so that number is "
            "not available to it"
        )

    # New blocks use only free numbers.
    assert manual_block(env, ["1.0.0.3"], ttl=600)["blocked"][0]["ruleNumber"] == 73


def test_sweep_brings_a_lowered_capacity_back_within_it(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=600)
    manual_block(env, ["1.0.0.2", "1.0.0.3"], ttl=3600)
    env.set_env(CAPACITY="2")

    result = env.invoke(SCHEDULED)

    assert [(e["address"], e["ruleNumber"]) for e in result["evicted"]] == [("1.0.0.1/32", 71)]
    assert env.in_range() == env.named() == {72: "1.0.0.2/32", 73: "1.0.0.3/32"}


def test_sweep_drops_the_records_of_an_acl_that_was_deleted(env: Env) -> None:
    vpc = env.ec2.describe_network_acls(NetworkAclIds=[env.acl])["NetworkAcls"][0]["VpcId"]
    other = env.ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    env.set_env(NACL_IDS=json.dumps([env.acl, other]))
    manual_block(env, ["1.0.0.1"], ttl=600)
    assert len(env.rows()) == 2
    env.ec2.delete_network_acl(NetworkAclId=other)
    env.set_env(NACL_IDS=json.dumps([env.acl]))
    env.reports()

    result = env.invoke(SCHEDULED)

    assert result["missingNetworkAcls"] == [other]
    assert {pk.split("#")[1] for pk in env.rows()} == {env.acl}
    (sent,) = env.reports()
    assert (
        f"Network ACL {other} does not exist: dropped 1 recorded block(s) for it"
        in (sent["detail"]["actions"])
    )


def test_an_unreadable_row_does_not_wedge_the_sweeper(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "1.0.0.2"], ttl=3600)
    env.edit_row("1.0.0.2/32", "REMOVE blocked_until")

    result = env.invoke(SCHEDULED)

    # A row without a readable expiry counts as ended.
    assert [r["address"] for r in result["expired"]] == ["1.0.0.2/32"]
    assert env.in_range() == {71: "1.0.0.1/32"}


# --------------------------------------------------------------------------- robustness


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_malformed_events_never_raise(env: Env, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        env.set_env(NACL_IDS="[]")
    else:
        env.set_env(NACL_IDS=json.dumps([env.acl]))
    shape, event = malformed_event(data, [load(SSH), load(PROBE), load(IAM_V6)])
    result = env.invoke(event)
    assert result["status"] in HANDLED
    event_label(f"{shape}: {result['status']}")


def test_every_call_is_declared(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.set_env(CAPACITY="3", DIRECTIONS='["ingress", "egress"]', REPORT_EVENT_BUS="default")
    env.invoke(load(PROBE))
    env.invoke(load(PROBE))  # idempotent replay
    env.invoke(load(IAM_V6))  # evicts
    inject_before_create(
        env, monkeypatch, lambda **kw: env.add_entry(kw["RuleNumber"], "9.9.9.9/32")
    )
    manual_block(env, ["1.0.0.1"], ttl=600)  # races
    env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "test"})
    env.set_env(NACL_IDS="[]")
    event = load(RDP)
    event["detail"]["resource"]["instanceDetails"]["networkInterfaces"][0]["subnetId"] = env.subnet
    env.invoke(event)
    env.clock.advance(7200)
    env.set_env(NACL_IDS=json.dumps([env.acl]))
    env.add_entry(79, "9.9.9.8/32")  # a deny of our form nothing records: an orphan
    env.invoke(SCHEDULED)
    env.invoke(SCHEDULED)  # reads when the orphan was first seen

    declared = permissions.actions(PERMISSIONS)
    assert env.calls <= declared, env.calls - declared
    assert {
        "ec2:DescribeNetworkAcls",
        "ec2:CreateNetworkAclEntry",
        "ec2:DeleteNetworkAclEntry",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:Scan",
        "sns:Publish",
        "events:PutEvents",
    } <= env.calls
    # Nothing is declared that the code does not call (besides the KMS key SNS uses).
    assert declared - env.calls == {"kms:GenerateDataKey", "kms:Decrypt"}


# --------------------------------------------------------------------------- roles and inputs

CC = "gd_ec2_cc_activity_outbound.json"
CC_DESTINATION = "45.137.21.9/32"
BLOCK_IP_ARN = "arn:aws:securityhub:us-east-1:123456789012:action/custom/BlockIP"


def test_an_outbound_cc_destination_is_denied_at_the_egress_side_only(env: Env) -> None:
    env.set_env(DIRECTIONS='["ingress", "egress"]')
    result = env.invoke(load(CC))

    assert [(b["address"], b["direction"], b["ruleNumber"]) for b in result["blocked"]] == [
        (CC_DESTINATION, "egress", 71)
    ]
    assert env.in_range(egress=True) == {71: CC_DESTINATION}
    assert env.in_range() == {}
    assert set(env.rows()) == {f"entry#{env.acl}#egress#{CC_DESTINATION}"}
    (sent,) = env.reports()
    assert sent["detail"]["severity"] == "HIGH"
    assert sent["detail"]["actions"] == [
        f"Denied {CC_DESTINATION} in {env.acl} egress as rule 71 until 2025-06-15T16:06:40Z"
    ]


def test_an_outbound_destination_without_egress_is_rejected_with_the_reason(env: Env) -> None:
    result = env.invoke(load("gd_ec2_malicious_ip_custom_outbound.json"))

    assert result["blocked"] == []
    assert result["rejected"] == [{"address": "91.92.109.44", "reason": logic.EGRESS_DISABLED}]
    assert env.in_range() == env.in_range(egress=True) == {}
    assert env.count("CreateNetworkAclEntry") == 0


def test_a_custom_threat_list_caller_connecting_in_is_denied_at_ingress(env: Env) -> None:
    result = env.invoke(load("gd_ec2_malicious_ip_custom_inbound.json"))
    assert [(b["address"], b["direction"]) for b in result["blocked"]] == [
        ("80.94.95.115/32", "ingress")
    ]


def test_a_tor_exit_connecting_in_is_denied(env: Env) -> None:
    result = env.invoke(load("gd_ec2_tor_ip_caller.json"))
    assert env.in_range() == {71: "185.220.101.33/32"}
    assert result["status"] == "processed"


def test_a_spoofed_guardduty_finding_is_rejected(env: Env) -> None:
    event = load(SSH)
    event["source"] = "aws.securityhub"
    result = env.invoke(event)
    assert result["status"] == "rejected"
    assert "not 'aws.guardduty'" in result["reason"]
    assert env.counted == []


def test_a_block_ip_action_answers_each_role_on_its_side(env: Env) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN, DIRECTIONS='["ingress", "egress"]')
    result = env.invoke(load("securityhub_block_ip.json"))

    assert result["status"] == "processed"
    inbound = ["185.220.101.46/32", "80.82.77.139/32", "45.155.205.233/32", "185.220.100.252/32"]
    inbound.append(V6_SOURCE)
    assert sorted(env.in_range().values()) == sorted(inbound)
    assert sorted(env.in_range(egress=True).values()) == sorted([*inbound, CC_DESTINATION])
    reasons = {r["address"]: r["reason"] for r in result["rejected"]}
    assert reasons == {
        "198.51.100.77": "documentation range (RFC 5737, RFC 3849, RFC 9637)",
        "10.20.30.40": "private address (RFC 1918)",
    }
    assert [f["type"] for f in result["findings"] if "ignored" in f] == ["Recon:EC2/Portscan"]


# --------------------------------------------------------------------------- a full ACL

ENTRY_QUOTA = 20


def enforce_entry_quota(env: Env, quota: int = ENTRY_QUOTA) -> None:
    """Make the function's EC2 client refuse entries past AWS's quota, as AWS does.

    moto has no quota on network ACL entries. AWS counts rules per ACL and direction, IPv4
    and IPv6 apart, the ACL's own rules and the default rule (32767) included, and answers
    ``NetworkAclEntryLimitExceeded`` (https://docs.aws.amazon.com/vpc/latest/userguide/
    amazon-vpc-limits.html#vpc-limits-nacls). The real moto call runs when there is room.
    """
    client = aws.client("ec2")
    real_create = client.create_network_acl_entry

    def create_network_acl_entry(**request: Any) -> Any:
        acl = env.ec2.describe_network_acls(NetworkAclIds=[request["NetworkAclId"]])
        ipv6 = "Ipv6CidrBlock" in request
        held = [
            e
            for e in acl["NetworkAcls"][0]["Entries"]
            if e["Egress"] == request["Egress"] and ("Ipv6CidrBlock" in e) == ipv6
        ]
        if len(held) >= quota:
            raise ClientError(
                {
                    "Error": {
                        "Code": "NetworkAclEntryLimitExceeded",
                        "Message": "The maximum number of network ACL entries has been reached.",
                    }
                },
                "CreateNetworkAclEntry",
            )
        return real_create(**request)

    env.monkeypatch.setattr(client, "create_network_acl_entry", create_network_acl_entry)


def fill_to_quota(env: Env, nacl_id: str) -> None:
    """The ACL's own ALLOW rules (outside the reserved range) up to the IPv4 ingress quota."""
    entries = env.ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"][0]["Entries"]
    held = sum(1 for e in entries if not e["Egress"] and "CidrBlock" in e)
    for index in range(ENTRY_QUOTA - held):
        env.ec2.create_network_acl_entry(
            NetworkAclId=nacl_id,
            RuleNumber=200 + index,
            Protocol="6",
            PortRange={"From": 443, "To": 443},
            RuleAction="allow",
            Egress=False,
            CidrBlock=f"100.{index}.0.0/16",
        )


def second_acl(env: Env) -> str:
    vpc = env.ec2.describe_network_acls(NetworkAclIds=[env.acl])["NetworkAcls"][0]["VpcId"]
    other: str = env.ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    return other


def test_a_full_acl_is_a_reported_rejection_and_the_other_acls_are_still_blocked(
    env: Env,
) -> None:
    full = second_acl(env)
    fill_to_quota(env, full)
    enforce_entry_quota(env)
    env.set_env(NACL_IDS=json.dumps([full, env.acl]))

    result = env.invoke(load(SSH))

    assert result["status"] == "processed"
    assert [(b["networkAclId"], b["ruleNumber"]) for b in result["blocked"]] == [(env.acl, 71)]
    ((rejected),) = result["rejected"]
    assert rejected["address"] == SSH_SOURCE
    assert rejected["reason"].startswith(f"{full} ingress: AWS refused the entry")
    assert "quota" in rejected["reason"]
    assert env.in_range() == {71: SSH_SOURCE}
    assert env.in_range(acl=full) == {}
    assert not [pk for pk in env.rows() if full in pk], "withdrawn, not left"
    (sent,) = env.reports()
    assert any("AWS refused the entry" in line for line in sent["detail"]["actions"])


def test_a_full_acl_does_not_halt_the_sweep(env: Env) -> None:
    full = second_acl(env)
    env.set_env(NACL_IDS=json.dumps([full, env.acl]))
    manual_block(env, ["1.0.0.1"], ttl=3600)
    env.set_env(NACL_IDS=json.dumps([env.acl]))
    manual_block(env, ["1.0.0.2"], ttl=600)
    env.set_env(NACL_IDS=json.dumps([full, env.acl]))
    env.ec2.delete_network_acl_entry(NetworkAclId=full, RuleNumber=71, Egress=False)
    fill_to_quota(env, full)
    enforce_entry_quota(env)
    env.clock.advance(601)
    env.reports()

    result = env.invoke(SCHEDULED)

    assert [(e["address"], e["networkAclId"]) for e in result["dropped"]] == [("1.0.0.1/32", full)]
    assert [(e["address"], e["networkAclId"]) for e in result["expired"]] == [
        ("1.0.0.2/32", env.acl)
    ]
    assert env.in_range() == {71: "1.0.0.1/32"}
    (sent,) = env.reports()
    assert any(
        line.startswith(f"Dropped the block of 1.0.0.1/32 in {full} ingress: AWS refused")
        for line in sent["detail"]["actions"]
    )


# --------------------------------------------------------------------------- allowlist changes


def test_the_sweep_lifts_blocks_the_allowlist_now_covers_and_says_so(env: Env) -> None:
    manual_block(env, ["1.0.0.1", "9.9.9.9"], ttl=3600)
    env.set_env(ALLOWLIST_CIDRS='["1.0.0.0/24"]')
    env.reports()

    result = env.invoke(SCHEDULED)

    assert result["lifted"] == [
        {"address": "1.0.0.1/32", "networkAclId": env.acl, "direction": "ingress", "ruleNumber": 71}
    ]
    assert env.in_range() == {72: "9.9.9.9/32"}
    assert set(env.rows()) == {f"entry#{env.acl}#ingress#9.9.9.9/32"}
    (sent,) = env.reports()
    assert (
        f"Unblocked 1.0.0.1/32 in {env.acl} ingress (removed rule 71): allow-listed by "
        "1.0.0.0/24" in sent["detail"]["actions"]
    )
    again = env.invoke(SCHEDULED)
    assert again["restored"] == [] and again["lifted"] == []
    assert env.in_range() == {72: "9.9.9.9/32"}


def test_placement_retries_stop_in_time_for_the_lambda_timeout(env: Env) -> None:
    """Every create loses its rule number to another writer and takes 8 s; the invocation
    has 60 s (CONTEXT), so the placement gives up in time rather than at ten attempts."""
    client = aws.client("ec2")
    refused: list[int] = []

    def create_network_acl_entry(**request: Any) -> Any:
        env.clock.advance(8)
        refused.append(request["RuleNumber"])
        raise ClientError(
            {"Error": {"Code": "NetworkAclEntryAlreadyExists", "Message": "taken"}},
            "CreateNetworkAclEntry",
        )

    env.monkeypatch.setattr(client, "create_network_acl_entry", create_network_acl_entry)

    with pytest.raises(logic.PlacementError, match="the next attempt would not finish in time"):
        env.invoke(load(SSH))

    assert env.clock.at - START <= 60 - blocking.DEADLINE_MARGIN_SECONDS
    assert len(refused) < logic.MAX_ATTEMPTS


# --------------------------------------------------------------------------- stale reads


def stale_reads(env: Env, count: int, rewrite: Callable[[list[dict[str, Any]]], None]) -> None:
    """The function's next ``count`` DescribeNetworkAcls answers are stale, as AWS's may be
    (the API is eventually consistent; moto's answers never are): ``rewrite`` edits the
    entries of each before the function sees it."""
    client = aws.client("ec2")
    real_describe = client.describe_network_acls
    left = [count]

    def describe_network_acls(**request: Any) -> Any:
        response = real_describe(**request)
        if left[0] > 0:
            left[0] -= 1
            for acl in response["NetworkAcls"]:
                rewrite(acl["Entries"])
        return response

    env.monkeypatch.setattr(client, "describe_network_acls", describe_network_acls)


def test_an_unblock_right_after_a_block_does_not_believe_one_stale_read(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=3600)
    assert env.in_range() == {71: "1.0.0.1/32"}

    def hide_71(entries: list[dict[str, Any]]) -> None:
        entries[:] = [e for e in entries if e["RuleNumber"] != 71]

    stale_reads(env, 2, hide_71)  # the block's entry is not visible yet

    env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "test"})

    assert env.in_range() == {}, "the deny must not outlive its row and rule item"
    assert env.rows() == {}


def test_a_delete_still_shown_keeps_its_rule_item_until_a_sweep_sees_it_gone(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=3600)
    deleted: list[int] = []
    client = aws.client("ec2")
    real_delete = client.delete_network_acl_entry

    def delete_network_acl_entry(**request: Any) -> Any:
        deleted.append(request["RuleNumber"])
        return real_delete(**request)

    env.monkeypatch.setattr(client, "delete_network_acl_entry", delete_network_acl_entry)

    def show_71_still(entries: list[dict[str, Any]]) -> None:
        if deleted and not any(e["RuleNumber"] == 71 and not e["Egress"] for e in entries):
            entries.append(
                {
                    "RuleNumber": 71,
                    "Protocol": "-1",
                    "RuleAction": "deny",
                    "Egress": False,
                    "CidrBlock": "1.0.0.1/32",
                }
            )

    stale_reads(env, 1 + logic.VERIFY_READS, show_71_still)

    env.invoke({"action": "unblock", "addresses": ["1.0.0.1"], "reason": "test"})

    assert deleted == [71]
    assert env.in_range() == {}
    (row,) = env.rows().values()
    assert row["rule_number"] == {"N": "71"}, "not believed gone yet"
    assert int(row["blocked_until"]["N"]) <= env.clock.at, "but ended"

    env.invoke(SCHEDULED)

    assert env.rows() == {} and env.in_range() == {}


def test_a_deny_of_our_form_that_nothing_records_is_removed_after_the_grace(env: Env) -> None:
    manual_block(env, ["1.0.0.1"], ttl=3600)
    env.add_entry(75, "9.9.9.9/32", action="allow")
    for pk in env.rows():
        env.delete_item(pk)  # the record lost, the deny left behind

    first = env.invoke(SCHEDULED)

    assert env.in_range() == {71: "1.0.0.1/32"}
    assert [(f["ruleNumber"], f.get("removeAfter")) for f in first["foreign"]] == [
        (71, "2025-06-16T15:06:40Z"),
        (75, None),  # not our form: never touched
    ]
    env.clock.advance(logic.ORPHAN_GRACE_SECONDS - 1)
    assert env.invoke(SCHEDULED)["removedOrphan"] == []
    env.clock.advance(1)
    env.reports()

    result = env.invoke(SCHEDULED)

    assert [(r["address"], r["ruleNumber"]) for r in result["removedOrphan"]] == [
        ("1.0.0.1/32", 71)
    ]
    assert env.in_range() == {}
    assert env.entries()[75] == ("9.9.9.9/32", "allow")
    (sent,) = env.reports()
    assert (
        f"Removed rule 71 (deny 1.0.0.1/32) from {env.acl} ingress: it is exactly a deny this "
        "remediator writes, inside its range, and no block has been recorded for it since "
        "2025-06-15T15:06:40Z" in sent["detail"]["actions"]
    )


@pytest.mark.parametrize(
    ("fixture", "address", "direction"),
    [
        ("gd_threat_list_custom_inbound.json", "185.220.101.7/32", "ingress"),
        ("gd_threat_list_custom_outbound.json", "91.92.240.5/32", "egress"),
    ],
)
def test_a_finding_raised_by_our_own_threat_list_closes_the_loop(
    env: Env, fixture: str, address: str, direction: str
) -> None:
    """The threat_lists module's lists make GuardDuty raise `.Custom` findings; the NACL
    answers a caller connecting in at ingress and a destination we reach out to at egress."""
    env.set_env(DIRECTIONS='["ingress", "egress"]')
    result = env.invoke(load(fixture))
    blocked = {(b["address"], b["direction"]) for b in result["blocked"]}
    assert (address, direction) in blocked
    if direction == "egress":
        assert blocked == {(address, "egress")}
        assert env.in_range() == {}
