"""The Config part of the local demo: a world-open SSH rule found and fixed, another
left alone because of its tag, and the report people get.

A moto server on 127.0.0.1 stands in for AWS. Two security groups open SSH to the world
(beside an office range and HTTPS); one carries ``playbook:remediation=skip``. The
catalog's ``restricted-ssh`` rule is put into moto's Config (which checks its source
identifier against the published managed rules), but moto does not evaluate managed
rules, so the demo sends the "Config Rules Compliance Change" events Config would send
for the two groups through the real ``config_remediator`` handler, in-process, with
``auto_remediate`` on for the rule, and prints each group after and the reports from the
notifications topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3

from bundle.motoserver import InProcessContext, moto_server, pointed_at, scoped_environ
from modules.config_rules_catalog import CATALOG

EVENT = Path(__file__).resolve().parent.parent / "tests" / "events"
PREFIX = "demo"
RULE = "restricted-ssh"
REGION = "us-east-1"


@dataclass
class ConfigDemo:
    groups: dict[str, list[str]] = field(default_factory=dict)  # label -> ingress after
    outcomes: dict[str, str] = field(default_factory=dict)  # label -> remediator status
    reports: list[dict[str, Any]] = field(default_factory=list)


def _ingress(ec2: Any, group: str) -> list[str]:
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    return sorted(
        f"tcp {p['FromPort']} from {r['CidrIp']}"
        for p in described["IpPermissions"]
        for r in p.get("IpRanges", [])
    )


def _event(group: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENT / "config_rules_compliance_change.json").read_text())
    event["region"] = REGION
    event["detail"].update(
        configRuleName=f"{PREFIX}-{RULE}",
        resourceType="AWS::EC2::SecurityGroup",
        resourceId=group,
        awsRegion=REGION,
    )
    qualifier = event["detail"]["newEvaluationResult"]["evaluationResultIdentifier"]
    qualifier["evaluationResultQualifier"].update(
        configRuleName=f"{PREFIX}-{RULE}",
        resourceType="AWS::EC2::SecurityGroup",
        resourceId=group,
    )
    event["detail"]["newEvaluationResult"]["annotation"] = "Port 22 is open to 0.0.0.0/0."
    return event


def run(progress: Callable[[str], None] = lambda _: None) -> ConfigDemo:
    from functions.common import aws
    from functions.config_remediator import handler

    demo = ConfigDemo()
    progress("config: starting a moto server")
    with moto_server() as server, pointed_at(server.endpoint):

        def client(service: str) -> Any:
            return boto3.client(service, region_name=REGION, endpoint_url=server.endpoint)

        ec2, sns, sqs, config = client("ec2"), client("sns"), client("sqs"), client("config")
        rule = CATALOG[RULE]
        config.put_config_rule(
            ConfigRule={
                "ConfigRuleName": f"{PREFIX}-{RULE}",
                "Source": {"Owner": "AWS", "SourceIdentifier": rule.source},
                "Scope": {"ComplianceResourceTypes": ["AWS::EC2::SecurityGroup"]},
            }
        )
        topic = sns.create_topic(Name=f"{PREFIX}-reports")["TopicArn"]
        inbox = sqs.create_queue(QueueName=f"{PREFIX}-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
        vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
        groups = {}
        for label, tags in (
            ("web (no tag)", []),
            (
                "bastion (playbook:remediation=skip)",
                [{"Key": "playbook:remediation", "Value": "skip"}],
            ),
        ):
            spec: dict[str, Any] = {
                "GroupName": label.split()[0],
                "Description": label,
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
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": "198.51.100.0/24"}],
                    },
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                    },
                ],
            )
            groups[label] = group
        environment = {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "RULES": json.dumps(
                {
                    f"{PREFIX}-{RULE}": {
                        "action": rule.remediation,
                        "auto_remediate": True,
                        "parameters": dict(rule.parameters),
                    }
                }
            ),
            "DRY_RUN": "false",
            "NOTIFY_TOPIC_ARN": topic,
            "POWERTOOLS_SERVICE_NAME": "config_remediator",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        context = InProcessContext.of(
            f"arn:aws:lambda:{REGION}:123456789012:function:{PREFIX}-config-remediator"
        )
        with scoped_environ(environment):
            aws.reset()
            try:
                for label, group in groups.items():
                    progress(f"config: remediating {label}")
                    result = handler.lambda_handler(_event(group), cast(Any, context))
                    demo.outcomes[label] = str(result["status"])
                    demo.groups[label] = _ingress(ec2, group)
            finally:
                aws.reset()
        while messages := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in messages:
                sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
                demo.reports.append(json.loads(json.loads(message["Body"])["Message"]))
    return demo
