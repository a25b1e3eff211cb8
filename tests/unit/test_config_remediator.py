"""config_remediator against in-process moto: each action on real (moto) resources, the
no-op on a compliant resource, the exclusion tag, auto_remediate off, dry-run, back to
COMPLIANT, spoofed sources, and the declared permissions.

Events are the documented "Config Rules Compliance Change" shape
(tests/events/config_rules_compliance_change.json) with the rule and resource swapped.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bundle.motoserver import InProcessContext
from functions.common import aws, permissions
from functions.config_remediator import handler
from functions.config_remediator.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "pb"
SKIP_TAG = {"Key": "playbook:remediation", "Value": "skip"}
# API operations whose IAM action has another name.
IAM_ACTION_OF = {
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
}
RULES = {
    f"{PREFIX}-restricted-ssh": "revoke_open_admin_ports",
    f"{PREFIX}-restricted-rdp": "revoke_open_admin_ports",
    f"{PREFIX}-s3-bucket-public-read-prohibited": "block_s3_public_access",
    f"{PREFIX}-s3-bucket-server-side-encryption-enabled": "enable_s3_default_encryption",
    f"{PREFIX}-access-keys-rotated": "deactivate_old_access_keys",
    f"{PREFIX}-ec2-imdsv2-check": "require_imdsv2",
}


CONTEXT = InProcessContext.named("config-remediator")


@dataclass
class World:
    queue_url: str
    monkeypatch: pytest.MonkeyPatch
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def configure(self, auto: bool = True, dry_run: bool = False, **parameters: str) -> None:
        rules = {
            name: {"action": action, "auto_remediate": auto, "parameters": parameters}
            for name, action in RULES.items()
        }
        self.monkeypatch.setenv("RULES", json.dumps(rules))
        self.monkeypatch.setenv("DRY_RUN", "true" if dry_run else "false")

    def invoke(self, event: Any) -> dict[str, Any]:
        result: dict[str, Any] = handler.lambda_handler(event, CONTEXT, now=lambda: self.now)
        return result

    def reports(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                found.append(json.loads(json.loads(message["Body"])["Message"]))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "config_remediator",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws.reset()
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="reports")["TopicArn"]
        url = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        monkeypatch.setenv("NOTIFY_TOPIC_ARN", topic)
        state = World(queue_url=url, monkeypatch=monkeypatch)
        state.configure()
        yield state
        aws.reset()


def compliance_change(
    rule: str, resource_type: str, resource_id: str, compliance: str = "NON_COMPLIANT"
) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "config_rules_compliance_change.json").read_text())
    detail = event["detail"]
    detail.update(configRuleName=rule, resourceType=resource_type, resourceId=resource_id)
    for result in ("newEvaluationResult", "oldEvaluationResult"):
        qualifier = detail[result]["evaluationResultIdentifier"]["evaluationResultQualifier"]
        qualifier.update(configRuleName=rule, resourceType=resource_type, resourceId=resource_id)
    detail["newEvaluationResult"]["complianceType"] = compliance
    detail["oldEvaluationResult"]["complianceType"] = (
        "COMPLIANT" if compliance == "NON_COMPLIANT" else "NON_COMPLIANT"
    )
    return event


# --------------------------------------------------------------------------- security groups


def mixed_group(tags: list[dict[str, str]] | None = None) -> str:
    """A group with world SSH, a world range 20-25 (SSH inside), world RDP on IPv6, SSH
    from an office range, HTTPS from the world and a self-reference."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    spec: dict[str, Any] = {
        "GroupName": f"web-{uuid.uuid4().hex[:6]}",
        "Description": "web",
        "VpcId": vpc,
    }
    if tags:
        spec["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": tags}]
    group = ec2.create_security_group(**spec)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [
                    {"CidrIp": "0.0.0.0/0"},
                    {"CidrIp": "198.51.100.0/24", "Description": "office"},
                ],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 20,
                "ToPort": 25,
                "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "legacy ftp+smtp"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 3389,
                "ToPort": 3389,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": group}],
            },
        ],
    )
    return group


def ingress(group: str) -> set[tuple[str, int, int, str]]:
    ec2 = boto3.client("ec2", region_name=REGION)
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    rules = set()
    for p in described["IpPermissions"]:
        for r in p.get("IpRanges", []):
            rules.add((p["IpProtocol"], p.get("FromPort", -1), p.get("ToPort", -1), r["CidrIp"]))
        for r in p.get("Ipv6Ranges", []):
            rules.add((p["IpProtocol"], p.get("FromPort", -1), p.get("ToPort", -1), r["CidrIpv6"]))
        for r in p.get("UserIdGroupPairs", []):
            rules.add((p["IpProtocol"], p.get("FromPort", -1), p.get("ToPort", -1), r["GroupId"]))
    return rules


def test_only_world_ssh_and_rdp_are_revoked(world: World) -> None:
    group = mixed_group()
    before = ingress(group)
    result = world.invoke(
        compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group)
    )
    assert result["status"] == "remediated"
    after = ingress(group)
    gone = {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 20, 25, "0.0.0.0/0"), ("tcp", 3389, 3389, "::/0")}
    kept_pieces = {("tcp", 20, 21, "0.0.0.0/0"), ("tcp", 23, 25, "0.0.0.0/0")}
    assert after == (before - gone) | kept_pieces
    (report,) = world.reports()
    assert report["source"] == "playbook.config_remediator"
    assert any(
        "revoked tcp 20-25 from 0.0.0.0/0, keep 20-21, 23-25" in a
        for a in report["detail"]["actions"]
    )
    # The split pieces keep the original rule's description.
    ec2 = boto3.client("ec2", region_name=REGION)
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    pieces = [p for p in described["IpPermissions"] if p.get("FromPort") == 23]
    assert pieces[0]["IpRanges"][0].get("Description") == "legacy ftp+smtp"


def test_revocation_is_idempotent_and_a_compliant_group_is_a_no_op(world: World) -> None:
    group = mixed_group()
    event = compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group)
    world.invoke(event)
    after_first = ingress(group)
    world.reports()
    again = world.invoke(copy.deepcopy(event))
    assert again["status"] == "already-compliant"
    assert again["changed"] == [] and ingress(group) == after_first
    (report,) = world.reports()
    assert report["detail"]["actions"] == ["nothing to change"]


def test_all_traffic_from_the_world_is_reported_not_split(world: World) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(GroupName="open", Description="open", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    result = world.invoke(
        compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group)
    )
    assert result["status"] == "skipped" and "a person must narrow it" in result["skipped"][0]
    assert ("-1", -1, -1, "0.0.0.0/0") in ingress(group)


def test_exclusion_tag_is_honoured(world: World) -> None:
    group = mixed_group(tags=[SKIP_TAG])
    before = ingress(group)
    result = world.invoke(
        compliance_change(f"{PREFIX}-restricted-rdp", "AWS::EC2::SecurityGroup", group)
    )
    assert result["status"] == "skipped" and "playbook:remediation=skip" in result["skipped"][0]
    assert ingress(group) == before
    (report,) = world.reports()
    assert report["detail"]["actions"][0].startswith("skipped: ")


def test_auto_remediate_off_and_dry_run_change_nothing(world: World) -> None:
    group = mixed_group()
    before = ingress(group)
    event = compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group)
    world.configure(auto=False)
    assert world.invoke(event)["status"] == "notify-only"
    world.configure(auto=True, dry_run=True)
    result = world.invoke(event)
    assert result["status"] == "dry-run" and result["planned"]
    assert ingress(group) == before
    notify, dry = world.reports()
    assert "auto_remediate is off" in notify["detail"]["summary"]
    assert "dry run" in dry["detail"]["summary"]
    assert all(a.startswith("would: ") for a in dry["detail"]["actions"])


def test_back_to_compliant_does_nothing(world: World) -> None:
    group = mixed_group()
    before = ingress(group)
    event = compliance_change(
        f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group, "COMPLIANT"
    )
    assert world.invoke(event)["status"] == "ignored"
    assert ingress(group) == before and world.reports() == []


@pytest.mark.parametrize("source", ["aws.configx", "custom.config", "aws.guardduty", None])
def test_spoofed_source_is_rejected(world: World, source: str | None) -> None:
    group = mixed_group()
    before = ingress(group)
    event = compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group)
    event["source"] = source
    result = world.invoke(event)
    assert result["status"] == "rejected" and "aws.config" in result["reason"]
    assert ingress(group) == before and world.reports() == []


def test_malformed_and_foreign_events_are_rejected_or_ignored(world: World) -> None:
    assert world.invoke([1, 2])["status"] == "rejected"
    event = compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", "")
    assert world.invoke(event)["status"] == "rejected"
    wrong_type = compliance_change(f"{PREFIX}-restricted-ssh", "AWS::S3::Bucket", "bucket")
    assert "not AWS::S3::Bucket" in world.invoke(wrong_type)["reason"]
    other_rule = compliance_change("someone-elses-rule", "AWS::S3::Bucket", "bucket")
    assert world.invoke(other_rule)["reason"] == "no automatic fix for this rule"


def test_organisation_rule_names_map_to_the_catalog_rule(world: World) -> None:
    """Member accounts see an organisation rule as OrgConfigRule-<name>-<8 characters>."""
    group = mixed_group()
    event = compliance_change(
        f"OrgConfigRule-{PREFIX}-restricted-ssh-a1b2c3d4", "AWS::EC2::SecurityGroup", group
    )
    assert world.invoke(event)["status"] == "remediated"
    assert ("tcp", 22, 22, "0.0.0.0/0") not in ingress(group)


# --------------------------------------------------------------------------- S3


def test_bucket_public_access_blocked_then_no_op(world: World) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="public-assets")
    s3.put_public_access_block(
        Bucket="public-assets",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": False,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    event = compliance_change(
        f"{PREFIX}-s3-bucket-public-read-prohibited", "AWS::S3::Bucket", "public-assets"
    )
    assert world.invoke(event)["status"] == "remediated"
    block = s3.get_public_access_block(Bucket="public-assets")["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert world.invoke(event)["status"] == "already-compliant"


def test_bucket_without_any_public_access_block(world: World) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="fresh")
    event = compliance_change(
        f"{PREFIX}-s3-bucket-public-read-prohibited", "AWS::S3::Bucket", "fresh"
    )
    assert world.invoke(event)["status"] == "remediated"
    assert all(
        s3.get_public_access_block(Bucket="fresh")["PublicAccessBlockConfiguration"].values()
    )


def test_tagged_bucket_is_skipped(world: World) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="website")
    s3.put_bucket_tagging(Bucket="website", Tagging={"TagSet": [SKIP_TAG]})
    for rule in ("s3-bucket-public-read-prohibited", "s3-bucket-server-side-encryption-enabled"):
        result = world.invoke(compliance_change(f"{PREFIX}-{rule}", "AWS::S3::Bucket", "website"))
        assert result["status"] == "skipped"
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_public_access_block(Bucket="website")


def test_default_encryption_only_where_missing(world: World) -> None:
    """moto, like S3 since January 2023, gives new buckets SSE-S3: the test removes it to
    stand for an older bucket, and a bucket with SSE-KMS is left as it is."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="old-bucket")
    s3.delete_bucket_encryption(Bucket="old-bucket")
    s3.create_bucket(Bucket="kms-encrypted")
    s3.put_bucket_encryption(
        Bucket="kms-encrypted",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    rule = f"{PREFIX}-s3-bucket-server-side-encryption-enabled"
    assert (
        world.invoke(compliance_change(rule, "AWS::S3::Bucket", "old-bucket"))["status"]
        == "remediated"
    )
    applied = s3.get_bucket_encryption(Bucket="old-bucket")["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert applied[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert (
        world.invoke(compliance_change(rule, "AWS::S3::Bucket", "kms-encrypted"))["status"]
        == "already-compliant"
    )
    kept = s3.get_bucket_encryption(Bucket="kms-encrypted")["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert kept[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


# --------------------------------------------------------------------------- IAM keys


def test_old_keys_are_deactivated_never_deleted(world: World) -> None:
    """Config names the user by its unique id (AIDA...). moto dates keys now, so the
    remediator's clock moves forward instead: keys made now are 100 days old then."""
    iam = boto3.client("iam", region_name=REGION)
    user = iam.create_user(UserName="deploy")["User"]
    old = iam.create_access_key(UserName="deploy")["AccessKey"]["AccessKeyId"]
    world.now = datetime.now(UTC) + timedelta(days=100)
    world.configure(maxAccessKeyAge="90")
    event = compliance_change(f"{PREFIX}-access-keys-rotated", "AWS::IAM::User", user["UserId"])
    result = world.invoke(event)
    assert result["status"] == "remediated"
    keys = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName="deploy")["AccessKeyMetadata"]
    }
    assert keys == {old: "Inactive"}
    assert world.invoke(event)["status"] == "already-compliant"


def test_young_keys_and_tagged_users_are_kept(world: World) -> None:
    iam = boto3.client("iam", region_name=REGION)
    young = iam.create_user(UserName="young")["User"]
    iam.create_access_key(UserName="young")
    tagged = iam.create_user(UserName="breakglass", Tags=[SKIP_TAG])["User"]
    iam.create_access_key(UserName="breakglass")
    world.now = datetime.now(UTC) + timedelta(days=30)
    rule = f"{PREFIX}-access-keys-rotated"
    assert (
        world.invoke(compliance_change(rule, "AWS::IAM::User", young["UserId"]))["status"]
        == "already-compliant"
    )
    world.now = datetime.now(UTC) + timedelta(days=400)
    assert (
        world.invoke(compliance_change(rule, "AWS::IAM::User", tagged["UserId"]))["status"]
        == "skipped"
    )
    for name in ("young", "breakglass"):
        (key,) = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        assert key["Status"] == "Active"
    gone = world.invoke(compliance_change(rule, "AWS::IAM::User", "AIDAEXAMPLEDELETED01"))
    assert gone["status"] == "skipped" and "no such IAM user" in gone["skipped"][0]


# --------------------------------------------------------------------------- IMDSv2


def instance(tags: list[dict[str, str]] | None = None) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    spec: dict[str, Any] = {
        "ImageId": "ami-12c6146b",
        "MinCount": 1,
        "MaxCount": 1,
        "MetadataOptions": {"HttpTokens": "optional", "HttpEndpoint": "enabled"},
    }
    if tags:
        spec["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
    return str(ec2.run_instances(**spec)["Instances"][0]["InstanceId"])


def tokens(instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    reservation = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return str(reservation["Instances"][0]["MetadataOptions"]["HttpTokens"])


def test_imdsv2_required_then_no_op_and_tag_honoured(world: World) -> None:
    plain, tagged = instance(), instance(tags=[SKIP_TAG])
    rule = f"{PREFIX}-ec2-imdsv2-check"
    assert (
        world.invoke(compliance_change(rule, "AWS::EC2::Instance", plain))["status"] == "remediated"
    )
    assert tokens(plain) == "required"
    assert (
        world.invoke(compliance_change(rule, "AWS::EC2::Instance", plain))["status"]
        == "already-compliant"
    )
    assert (
        world.invoke(compliance_change(rule, "AWS::EC2::Instance", tagged))["status"] == "skipped"
    )
    assert tokens(tagged) == "optional"


# --------------------------------------------------------------------------- permissions


def test_every_call_is_declared(world: World) -> None:
    """Runs every action once (and the report, on the topic and the default bus) and
    compares the calls with PERMISSIONS."""
    world.monkeypatch.setenv("REPORT_EVENT_BUS", "default")
    group = mixed_group()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="evidence-b")
    s3.delete_bucket_encryption(Bucket="evidence-b")
    iam = boto3.client("iam", region_name=REGION)
    user = iam.create_user(UserName="u")["User"]
    iam.create_access_key(UserName="u")
    world.now = datetime.now(UTC) + timedelta(days=200)
    events = [
        compliance_change(f"{PREFIX}-restricted-ssh", "AWS::EC2::SecurityGroup", group),
        compliance_change(
            f"{PREFIX}-s3-bucket-public-read-prohibited", "AWS::S3::Bucket", "evidence-b"
        ),
        compliance_change(
            f"{PREFIX}-s3-bucket-server-side-encryption-enabled", "AWS::S3::Bucket", "evidence-b"
        ),
        compliance_change(f"{PREFIX}-access-keys-rotated", "AWS::IAM::User", user["UserId"]),
        compliance_change(f"{PREFIX}-ec2-imdsv2-check", "AWS::EC2::Instance", instance()),
    ]
    with record_calls() as calls:
        for event in events:
            assert world.invoke(event)["status"] == "remediated"
    made = {IAM_ACTION_OF.get(call, call) for call in calls}
    declared = permissions.actions(PERMISSIONS)
    assert made <= declared, made - declared
    # Every declared action is needed (KMS is used by SNS on the function's behalf).
    assert declared - made == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert "events:PutEvents" in made
