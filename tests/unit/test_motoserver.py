"""The moto server the apply tests, benchmarks and demo share: loopback only, and it
leaves the process's environment as it found it."""

from __future__ import annotations

import os
import urllib.parse

import boto3
import pytest

from bundle.motoserver import FAKE_CREDENTIALS, moto_server, pointed_at

pytestmark = pytest.mark.unit


def test_the_server_listens_on_loopback_and_loads_managed_policies_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES", raising=False)
    before = dict(os.environ)
    with moto_server() as server, pointed_at(server.endpoint):
        assert urllib.parse.urlsplit(server.endpoint).hostname == "127.0.0.1"
        iam = boto3.client("iam", region_name="us-east-1")
        policy = "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"
        assert iam.get_policy(PolicyArn=policy)["Policy"]["Arn"] == policy
        assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint
    # Loading managed policies into every later mock_aws() costs about a second each.
    assert dict(os.environ) == before


def test_pointed_at_restores_what_was_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pointed_at("http://127.0.0.1:1"):
        assert os.environ["AWS_REGION"] == FAKE_CREDENTIALS["AWS_REGION"]
    assert os.environ["AWS_REGION"] == "eu-west-1"
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_the_server_knows_the_network_acl_id_filter_aws_documents() -> None:
    """moto 5.2 raises FilterNotImplementedError for DescribeNetworkAcls' network-acl-id
    filter, which nacl_blocklist's lookups use; the project's server fills that gap."""
    with moto_server() as server, pointed_at(server.endpoint):
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        found = ec2.describe_network_acls(Filters=[{"Name": "network-acl-id", "Values": [acl]}])
        assert [a["NetworkAclId"] for a in found["NetworkAcls"]] == [acl]
        missing = ec2.describe_network_acls(
            Filters=[{"Name": "network-acl-id", "Values": ["acl-0123456789abcdef0"]}]
        )
        assert missing["NetworkAcls"] == []


def test_a_schedule_rule_matches_no_put_event_as_in_aws() -> None:
    """moto lets a schedule rule match every PutEvents event and then fails the whole call
    (a 500) on its Lambda target; in AWS a schedule rule only fires on its schedule. The
    remediators put their reports on the default bus, where the sweep schedules live."""
    with moto_server() as server, pointed_at(server.endpoint):
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="sweep", ScheduleExpression="rate(5 minutes)")
        function = "arn:aws:lambda:us-east-1:123456789012:function:sweeper"
        events.put_targets(Rule="sweep", Targets=[{"Id": "sweeper", "Arn": function}])
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="reports")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        events.put_rule(Name="reports", EventPattern='{"source": ["playbook.test"]}')
        queue = arn["Attributes"]["QueueArn"]
        events.put_targets(Rule="reports", Targets=[{"Id": "queue", "Arn": queue}])

        put = events.put_events(
            Entries=[{"Source": "playbook.test", "DetailType": "Report", "Detail": "{}"}]
        )

        assert put["FailedEntryCount"] == 0
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
