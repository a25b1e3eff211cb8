"""The dangling-dns Config rule against in-process moto Route 53, S3, CloudFront, ELB,
Elastic Beanstalk and EC2: records pointing at existing and at deleted targets.

moto gaps, and what stands in:
- moto's PutEvaluations raises NotImplementedError unless TestMode is true ("missing rule
  and token support"): evaluations are sent with TestMode=True to moto, and the production
  request (TestMode false, batches of 100) is checked with botocore's Stubber.
- moto has no StartConfigRulesEvaluation: its request, and the "already running" answers,
  are checked with the Stubber.
- moto's Elastic Beanstalk environments have an empty CNAME, so only a deleted
  environment (the dangling case) is tested against moto.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bundle.motoserver import InProcessContext
from functions.common import aws, permissions
from functions.dangling_dns import handler, logic
from functions.dangling_dns.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls

pytestmark = pytest.mark.unit

REGION = "us-east-1"
ACCOUNT = "123456789012"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
# moto hands out Elastic IPs from 54.214.0.0/16, which AWS publishes as EC2 space.
EC2_RANGES = (ipaddress.ip_network("54.214.0.0/16"),)
RULE = "pb-dangling-dns"


CONTEXT = InProcessContext.named("dangling-dns")


def config_invocation(message_type: str = "ScheduledNotification") -> dict[str, Any]:
    """The event Config sends a custom Lambda rule on its schedule (AWS Config developer
    guide, "Example Events for AWS Config Rules")."""
    return {
        "version": "1.0",
        "invokingEvent": json.dumps(
            {
                "awsAccountId": ACCOUNT,
                "notificationCreationTime": "2026-12-02T12:00:00.000Z",
                "messageType": message_type,
                "recordVersion": "1.0",
            }
        ),
        "ruleParameters": "{}",
        "resultToken": "eyJlbmNyeXB0ZWREYXRhIjpbMSwyLDNdfQ==",
        "eventLeftScope": False,
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"
        "config.amazonaws.com/AWSServiceRoleForConfig",
        "configRuleArn": f"arn:aws:config:{REGION}:{ACCOUNT}:config-rule/config-rule-abc123",
        "configRuleName": RULE,
        "configRuleId": "config-rule-abc123",
        "accountId": ACCOUNT,
        "evaluationMode": "DETECTIVE",
    }


def route53_change(
    source: str = "aws.route53", name: str = "ChangeResourceRecordSets"
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": source,
        "account": ACCOUNT,
        "time": "2026-12-02T11:58:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "route53.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "requestParameters": {"hostedZoneId": "Z0123456789ABCDEFGHIJ"},
        },
    }


@dataclass
class Zone:
    zone_id: str
    dangling: set[str]
    healthy: set[str]


def upsert(route53: Any, zone_id: str, record: dict[str, Any]) -> None:
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )


def cname(name: str, value: str) -> dict[str, Any]:
    return {"Name": name, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": value}]}


def alias(name: str, target: str, zone: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "A",
        "AliasTarget": {"HostedZoneId": zone, "DNSName": target, "EvaluateTargetHealth": False},
    }


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Zone]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "CONFIG_RULE_NAME": RULE,
        "ELASTIC_IP_REGIONS": json.dumps([REGION]),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws.reset()
        yield build_zone()
        aws.reset()


def build_zone() -> Zone:
    route53 = boto3.client("route53", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    elb = boto3.client("elb", region_name=REGION)
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="t1")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]

    s3.create_bucket(Bucket="www.example.com")
    distribution = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "cdn",
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "o",
                        "DomainName": "www.example.com.s3.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "o",
                "ViewerProtocolPolicy": "allow-all",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            },
        }
    )["Distribution"]["DomainName"]
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
            "Subnet"
        ]["SubnetId"]
        for i, az in ((1, "a"), (2, "b"))
    ]
    alb = elbv2.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]
    classic = elb.create_load_balancer(
        LoadBalancerName="legacy",
        Listeners=[{"Protocol": "http", "LoadBalancerPort": 80, "InstancePort": 80}],
        AvailabilityZones=[f"{REGION}a"],
    )["DNSName"]
    eip = ec2.allocate_address(Domain="vpc")["PublicIp"]

    healthy = {
        # CNAME to an S3 website endpoint of an existing bucket (named after the host).
        "www.example.com": cname(
            "www.example.com", "www.example.com.s3-website-us-east-1.amazonaws.com"
        ),
        # Alias to S3 website hosting: the record name is the bucket.
        "www.example.com.": alias(
            "www.example.com", "s3-website-us-east-1.amazonaws.com", "Z3AQBSTGFYJSTF"
        ),
        "cdn.example.com": cname("cdn.example.com", distribution),
        "app.example.com": alias(
            "app.example.com", f"dualstack.{alb['DNSName']}", alb["CanonicalHostedZoneId"]
        ),
        "legacy.example.com": cname("legacy.example.com", classic),
        "ip.example.com": {
            "Name": "ip.example.com",
            "Type": "A",
            "TTL": 300,
            "ResourceRecords": [{"Value": eip}],
        },
        # Outside AWS: not ours to judge.
        "partner.example.com": {
            "Name": "partner.example.com",
            "Type": "A",
            "TTL": 300,
            "ResourceRecords": [{"Value": "192.0.2.10"}],
        },
        "docs.example.com": cname("docs.example.com", "example.github.io"),
    }
    dangling = {
        "old.example.com": cname(
            "old.example.com", "old.example.com.s3-website.eu-west-1.amazonaws.com"
        ),
        "assets.example.com": alias(
            "assets.example.com", "s3-website-us-east-1.amazonaws.com.", "Z3AQBSTGFYJSTF"
        ),
        "media.example.com": cname("media.example.com", "d111111abcdef8.cloudfront.net"),
        "shop.example.com": cname("shop.example.com", "shop-prod.us-east-1.elasticbeanstalk.com"),
        "api.example.com": alias(
            "api.example.com",
            "dualstack.gone-1234567890.us-east-1.elb.amazonaws.com.",
            "Z35SXDOTRQ7X7K",
        ),
        "vpn.example.com": {
            "Name": "vpn.example.com",
            "Type": "A",
            "TTL": 300,
            "ResourceRecords": [{"Value": "54.214.254.254"}],
        },
    }
    for record in (*healthy.values(), *dangling.values()):
        upsert(route53, zone_id, record)
    return Zone(zone_id, {n.rstrip(".") for n in dangling}, {n.rstrip(".") for n in healthy})


def run(event: dict[str, Any]) -> dict[str, Any]:
    return logic.handle(
        event, logic.Config.from_env(), lambda: EC2_RANGES, lambda: NOW, test_mode=True
    )


def test_dangling_records_are_found_and_existing_targets_pass(world: Zone) -> None:
    result = run(config_invocation())
    assert result["status"] == "evaluated" and result["zones"] == 1
    found = result["nonCompliant"][world.zone_id]
    assert {d["record"] for d in found} == world.dangling
    assert not {d["record"] for d in found} & world.healthy
    kinds = {d["record"]: d["kind"] for d in found}
    assert kinds == {
        "old.example.com": "s3-website",
        "assets.example.com": "s3-website",
        "media.example.com": "cloudfront",
        "shop.example.com": "elastic-beanstalk",
        "api.example.com": "load-balancer",
        "vpn.example.com": "elastic-ip",
    }
    assert result["failedEvaluations"] == []


def test_deleting_a_target_makes_its_record_dangle(world: Zone) -> None:
    boto3.client("elbv2", region_name=REGION).delete_load_balancer(
        LoadBalancerArn=boto3.client("elbv2", region_name=REGION).describe_load_balancers(
            Names=["web"]
        )["LoadBalancers"][0]["LoadBalancerArn"]
    )
    found = {d["record"] for d in run(config_invocation())["nonCompliant"][world.zone_id]}
    assert found == world.dangling | {"app.example.com"}


def test_a_zone_without_dangling_records_is_compliant(world: Zone) -> None:
    route53 = boto3.client("route53", region_name=REGION)
    clean = route53.create_hosted_zone(Name="clean.example", CallerReference="t2")["HostedZone"][
        "Id"
    ]
    upsert(route53, clean.rsplit("/", 1)[-1], cname("www.clean.example", "example.github.io"))
    evaluations, _ = logic.evaluate(
        logic.Inventory(ranges=lambda: EC2_RANGES, eip_regions=(REGION,)), NOW
    )
    by_zone = {e["ComplianceResourceId"]: e for e in evaluations}
    assert by_zone[clean.rsplit("/", 1)[-1]]["ComplianceType"] == "COMPLIANT"
    assert "Annotation" not in by_zone[clean.rsplit("/", 1)[-1]]
    flagged = by_zone[world.zone_id]
    assert flagged["ComplianceType"] == "NON_COMPLIANT"
    assert flagged["ComplianceResourceType"] == "AWS::Route53::HostedZone"
    assert len(flagged["Annotation"]) <= 256 and flagged["Annotation"].startswith("6 dangling: ")


def test_without_aws_ranges_a_records_are_not_judged(world: Zone) -> None:
    found = logic.handle(
        config_invocation(), logic.Config.from_env(), lambda: (), lambda: NOW, test_mode=True
    )
    assert {d["record"] for d in found["nonCompliant"][world.zone_id]} == world.dangling - {
        "vpn.example.com"
    }


def test_put_evaluations_request_outside_test_mode() -> None:
    """What the function sends AWS (TestMode false, at most 100 per call); moto cannot
    take it (NotImplementedError outside TestMode), so the Stubber checks the shape."""
    aws.reset()
    client = boto3.client("config", region_name=REGION)
    evaluations = [
        {
            "ComplianceResourceType": logic.RESOURCE_TYPE,
            "ComplianceResourceId": f"Z{i:020d}",
            "ComplianceType": "COMPLIANT",
            "OrderingTimestamp": NOW,
        }
        for i in range(150)
    ]
    with Stubber(client) as stub:
        for batch in (evaluations[:100], evaluations[100:]):
            stub.add_response(
                "put_evaluations",
                {"FailedEvaluations": []},
                {"Evaluations": batch, "ResultToken": "token", "TestMode": False},
            )
        aws._clients[("config", None)] = client
        aws._clients[("config", REGION)] = client
        try:
            assert logic.put_evaluations(evaluations, "token") == []
        finally:
            aws.reset()
        stub.assert_no_pending_responses()


def test_route53_change_starts_an_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto has no StartConfigRulesEvaluation: the Stubber checks the request, and that
    Config's "one is already running" answers are not failures."""
    monkeypatch.setenv("CONFIG_RULE_NAME", RULE)
    monkeypatch.setenv("AWS_REGION", REGION)
    aws.reset()
    client = boto3.client(
        "config", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_response("start_config_rules_evaluation", {}, {"ConfigRuleNames": [RULE]})
        stub.add_client_error("start_config_rules_evaluation", "LimitExceededException")
        aws._clients[("config", REGION)] = client
        try:
            config = logic.Config.from_env()
            assert (
                logic.handle(route53_change(), config, lambda: ())["status"] == "evaluation-started"
            )
            assert (
                logic.handle(route53_change(), config, lambda: ())["status"]
                == "evaluation-already-running"
            )
        finally:
            aws.reset()
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (route53_change(source="custom.route53"), "not 'aws.route53'"),
        (route53_change(name="GetHostedZone"), "not a Route 53 change"),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "neither"),
        (config_invocation("ComplianceChangeNotification"), "unexpected Config message type"),
    ],
)
def test_other_events_are_rejected(event: dict[str, Any], reason: str) -> None:
    result = handler.lambda_handler(event, CONTEXT)
    assert result["status"] == "rejected" and reason in result["reason"]


def test_ip_ranges_document_gives_ec2_prefixes() -> None:
    document = {
        "prefixes": [
            {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON"},
            {"ip_prefix": "54.214.0.0/16", "region": "us-west-2", "service": "EC2"},
        ],
        "ipv6_prefixes": [
            {"ipv6_prefix": "2600:1f14::/35", "region": "us-west-2", "service": "EC2"}
        ],
    }
    assert logic.ec2_networks(document) == (
        ipaddress.ip_network("54.214.0.0/16"),
        ipaddress.ip_network("2600:1f14::/35"),
    )


def test_every_call_is_declared(world: Zone) -> None:
    with record_calls() as calls:
        run(config_invocation())
    made = {
        "elasticloadbalancing:" + c.split(":")[1] if c.startswith("elasticloadbalancing") else c
        for c in calls
    }
    made = {"s3:ListAllMyBuckets" if c == "s3:ListBuckets" else c for c in made}
    made = {
        c.replace("cloudfront:ListDistributions2020_05_31", "cloudfront:ListDistributions")
        for c in made
    }
    declared = permissions.actions(PERMISSIONS)
    assert made <= declared, made - declared
    assert declared - made == {"config:StartConfigRulesEvaluation"}
