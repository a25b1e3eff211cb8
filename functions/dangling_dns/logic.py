"""The ``dangling-dns`` custom Config rule: Route 53 records that point at something this
account no longer has, which anyone can then create and serve the subdomain from
(subdomain takeover).

Targets checked, each against what exists in the account:

- S3 website endpoints (``<bucket>.s3-website-<region>.amazonaws.com`` or
  ``s3-website.<region>.amazonaws.com``; an alias names the bucket by the record itself):
  the bucket must be one of the account's buckets.
- CloudFront (``*.cloudfront.net``): one of the account's distributions.
- Elastic Beanstalk (``<cname>.<region>.elasticbeanstalk.com``): a live environment there.
- Load balancers (``*.elb.amazonaws.com``, ``dualstack.`` aliases included): an ALB, NLB or
  Classic Load Balancer of the account in the region the name carries.
- Elastic IPs: an A record whose address is in AWS's published EC2 ranges
  (https://ip-ranges.amazonaws.com/ip-ranges.json) must be one of the account's Elastic
  IPs in the checked regions; addresses outside AWS are not ours to judge.

Route 53 records are not a Config resource type, so each hosted zone is evaluated
(``AWS::Route53::HostedZone``): NON_COMPLIANT with the dangling records in the annotation,
COMPLIANT otherwise. Config invokes the function on its schedule with a result token for
``PutEvaluations``; a Route 53 change (CloudTrail through EventBridge) makes the function
ask Config to evaluate the rule now (``StartConfigRulesEvaluation``), which invokes it
again with a token.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.common import aws

FUNCTION_NAME = "dangling_dns"
RESOURCE_TYPE = "AWS::Route53::HostedZone"
ANNOTATION_LIMIT = 256  # PutEvaluations Annotation
EVALUATIONS_PER_CALL = 100  # PutEvaluations Evaluations
ROUTE53_CHANGES = ("ChangeResourceRecordSets", "DeleteHostedZone", "CreateHostedZone")
CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"

_S3_WEBSITE = re.compile(
    r"^(?:(?P<bucket>.+)\.)?s3-website[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
_CLOUDFRONT = re.compile(r"^[a-z0-9]+\.cloudfront\.net$")
_BEANSTALK = re.compile(r"^(?P<cname>.+)\.(?P<region>[a-z]{2}-[a-z]+-\d)\.elasticbeanstalk\.com$")
_LOAD_BALANCER = re.compile(
    r"^(?:dualstack\.)?(?P<name>.+)\.(?P<region>[a-z]{2}-[a-z]+-\d)\.elb\.amazonaws\.com$"
)

AwsRanges = Callable[[], Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]]


@dataclass(frozen=True)
class Config:
    rule_name: str
    regions: tuple[str, ...]  # where Elastic IPs are looked for

    @classmethod
    def from_env(cls) -> Config:
        region = os.environ.get("AWS_REGION", "us-east-1")
        regions = tuple(json.loads(os.environ.get("ELASTIC_IP_REGIONS", "[]"))) or (region,)
        return cls(rule_name=os.environ.get("CONFIG_RULE_NAME", ""), regions=regions)


@dataclass(frozen=True)
class Target:
    kind: str
    host: str
    region: str = ""
    name: str = ""  # the bucket or Beanstalk CNAME prefix


def _host(value: str) -> str:
    return value.strip().rstrip(".").lower()


def classify(record_name: str, value: str, alias: bool) -> Target | None:
    """What a CNAME value or alias target points at, when it is one of the checked kinds."""
    host = _host(value)
    match = _S3_WEBSITE.match(host)
    if match:
        bucket = match.group("bucket") or (_host(record_name) if alias else "")
        return Target("s3-website", host, match.group("region"), bucket or _host(record_name))
    if _CLOUDFRONT.match(host):
        return Target("cloudfront", host)
    match = _BEANSTALK.match(host)
    if match:
        return Target("elastic-beanstalk", host, match.group("region"), match.group("cname"))
    match = _LOAD_BALANCER.match(host)
    if match:
        return Target("load-balancer", host.removeprefix("dualstack."), match.group("region"))
    return None


def _elastic_ips(region: str) -> list[str]:
    return [a["PublicIp"] for a in aws.client("ec2", region).describe_addresses()["Addresses"]]


@dataclass
class Inventory:
    """What exists in the account, looked up once per kind and region."""

    ranges: AwsRanges
    eip_regions: tuple[str, ...]
    _cache: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def _get(self, kind: str, region: str, load: Callable[[], Iterable[str]]) -> frozenset[str]:
        key = (kind, region)
        if key not in self._cache:
            self._cache[key] = frozenset(_host(v) for v in load())
        return self._cache[key]

    def buckets(self) -> frozenset[str]:
        return self._get(
            "s3", "", lambda: [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
        )

    def distributions(self) -> frozenset[str]:
        def load() -> list[str]:
            found = []
            for page in aws.client("cloudfront").get_paginator("list_distributions").paginate():
                found += [d["DomainName"] for d in page["DistributionList"].get("Items", [])]
            return found

        return self._get("cloudfront", "", load)

    def beanstalk(self, region: str) -> frozenset[str]:
        def load() -> list[str]:
            client = aws.client("elasticbeanstalk", region)
            environments = client.describe_environments(IncludeDeleted=False)["Environments"]
            return [e["CNAME"] for e in environments if e.get("CNAME")]

        return self._get("beanstalk", region, load)

    def load_balancers(self, region: str) -> frozenset[str]:
        def load() -> list[str]:
            found = []
            for service in ("elbv2", "elb"):
                paginator = aws.client(service, region).get_paginator("describe_load_balancers")
                key = "LoadBalancers" if service == "elbv2" else "LoadBalancerDescriptions"
                for page in paginator.paginate():
                    found += [lb["DNSName"] for lb in page[key]]
            return found

        return self._get("elb", region, load)

    def elastic_ips(self) -> frozenset[str]:
        found: set[str] = set()
        for region in self.eip_regions:
            found |= self._get("eip", region, functools.partial(_elastic_ips, region))
        return frozenset(found)

    def exists(self, target: Target) -> bool:
        if target.kind == "s3-website":
            return target.name in self.buckets()
        if target.kind == "cloudfront":
            return target.host in self.distributions()
        if target.kind == "elastic-beanstalk":
            return target.host in self.beanstalk(target.region)
        return target.host in self.load_balancers(target.region)

    def in_aws(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self.ranges())


@dataclass(frozen=True)
class Dangling:
    record: str
    type: str
    target: str
    kind: str


def _records(zone_id: str) -> Iterable[Mapping[str, Any]]:
    paginator = aws.client("route53").get_paginator("list_resource_record_sets")
    for page in paginator.paginate(HostedZoneId=zone_id):
        yield from page["ResourceRecordSets"]


def dangling_records(zone_id: str, inventory: Inventory) -> list[Dangling]:
    found = []
    for record in _records(zone_id):
        name, kind = _host(record["Name"]), record["Type"]
        alias = record.get("AliasTarget")
        if alias:
            values, is_alias = [alias["DNSName"]], True
        elif kind == "CNAME":
            values, is_alias = [r["Value"] for r in record.get("ResourceRecords", [])], False
        elif kind == "A":
            for value in (r["Value"] for r in record.get("ResourceRecords", [])):
                try:
                    ours_to_judge = inventory.in_aws(value)
                except ValueError:
                    continue
                if ours_to_judge and value not in inventory.elastic_ips():
                    found.append(Dangling(name, kind, value, "elastic-ip"))
            continue
        else:
            continue
        for value in values:
            target = classify(name, value, is_alias)
            if target is not None and not inventory.exists(target):
                found.append(Dangling(name, kind, _host(value), target.kind))
    return found


def annotation(dangling: Sequence[Dangling]) -> str:
    text = f"{len(dangling)} dangling: " + "; ".join(
        f"{d.record} {d.type} -> {d.target} ({d.kind} not in this account)" for d in dangling
    )
    return text if len(text) <= ANNOTATION_LIMIT else text[: ANNOTATION_LIMIT - 3] + "..."


def evaluate(inventory: Inventory, now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One evaluation per hosted zone, and the dangling records per zone."""
    evaluations, details = [], {}
    for page in aws.client("route53").get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            zone_id = zone["Id"].rsplit("/", 1)[-1]
            dangling = dangling_records(zone_id, inventory)
            details[zone_id] = [d.__dict__ for d in dangling]
            evaluation: dict[str, Any] = {
                "ComplianceResourceType": RESOURCE_TYPE,
                "ComplianceResourceId": zone_id,
                "ComplianceType": "NON_COMPLIANT" if dangling else "COMPLIANT",
                "OrderingTimestamp": now,
            }
            if dangling:
                evaluation["Annotation"] = annotation(dangling)
            evaluations.append(evaluation)
    return evaluations, details


def put_evaluations(
    evaluations: Sequence[Mapping[str, Any]], result_token: str, test_mode: bool = False
) -> list[Any]:
    """PutEvaluations in batches of 100; returns the evaluations Config refused."""
    failed: list[Any] = []
    for start in range(0, len(evaluations), EVALUATIONS_PER_CALL):
        response = aws.client("config").put_evaluations(
            Evaluations=list(evaluations[start : start + EVALUATIONS_PER_CALL]),
            ResultToken=result_token,
            TestMode=test_mode,
        )
        failed += response.get("FailedEvaluations", [])
    return failed


class Rejected(ValueError):
    """Neither a Config invocation nor a Route 53 change notification."""


def handle(
    event: Mapping[str, Any],
    config: Config,
    ranges: AwsRanges,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    test_mode: bool = False,
) -> dict[str, Any]:
    if "invokingEvent" in event and "resultToken" in event:
        invoking = json.loads(str(event["invokingEvent"]))
        if invoking.get("messageType") not in (
            "ScheduledNotification",
            "OversizedConfigurationItemChangeNotification",
            "ConfigurationItemChangeNotification",
        ):
            raise Rejected(f"unexpected Config message type {invoking.get('messageType')!r}")
        inventory = Inventory(ranges=ranges, eip_regions=config.regions)
        evaluations, details = evaluate(inventory, now())
        failed = (
            put_evaluations(evaluations, str(event["resultToken"]), test_mode)
            if evaluations
            else []
        )
        return {
            "status": "evaluated",
            "zones": len(evaluations),
            "nonCompliant": {zone: found for zone, found in details.items() if found},
            "failedEvaluations": failed,
        }
    if event.get("detail-type") == CLOUDTRAIL_DETAIL_TYPE:
        if event.get("source") != "aws.route53":
            raise Rejected(
                f"a CloudTrail change notification from {str(event.get('source'))[:80]!r}, "
                "not 'aws.route53'"
            )
        detail = event.get("detail")
        name = detail.get("eventName") if isinstance(detail, Mapping) else None
        if name not in ROUTE53_CHANGES:
            raise Rejected(f"{name!r} is not a Route 53 change this rule follows")
        try:
            aws.client("config").start_config_rules_evaluation(ConfigRuleNames=[config.rule_name])
        except Exception as exc:
            # Config refuses a second start while one runs or within a minute of the last:
            # that evaluation sees this change too.
            if aws.error_code(exc) not in ("LimitExceededException", "ResourceInUseException"):
                raise
            return {"status": "evaluation-already-running", "rule": config.rule_name}
        return {"status": "evaluation-started", "rule": config.rule_name, "change": name}
    raise Rejected("neither a Config rule invocation nor a Route 53 change notification")


def ec2_networks(
    document: Mapping[str, Any],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The EC2 prefixes (where Elastic IPs come from) of AWS's ip-ranges.json."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in document.get("prefixes", []):
        if entry.get("service") == "EC2":
            networks.append(ipaddress.ip_network(entry["ip_prefix"]))
    for entry in document.get("ipv6_prefixes", []):
        if entry.get("service") == "EC2":
            networks.append(ipaddress.ip_network(entry["ipv6_prefix"]))
    return tuple(networks)
