"""The forensics part of the local demo: a compromised instance contained step by step.

A moto server on 127.0.0.1 stands in for AWS. The generated forensics module is applied to
it with the real Terraform CLI and AWS provider, beside an Auto Scaling group (one instance,
with an instance profile and two volumes) behind a target group. A GuardDuty
CryptoCurrency finding about that instance (bundle/demo_findings/forensics/) starts the
applied state machine, which moto's Step Functions interpreter runs; each step runs the
real step Lambda in-process (moto cannot run Lambda code without Docker). moto's gaps are
filled by bundle/motoworkflow.py (SSM agent, DescribeInstanceInformation, state machine
validation, bucket policy conditions), as in the tests. The demo prints what each step
did, what the account looks like after, and the evidence objects with their sha256.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from bundle.demo import _run
from bundle.motoserver import InProcessContext, moto_server, pointed_at, scoped_environ
from bundle.motoworkflow import (
    SsmAgentStandIn,
    bucket_policies_over_tls,
    executing_state_machines,
    finish,
    instance_information_stand_in,
    lambda_runs_in_process,
)
from bundle.paths import DIST

FINDING = Path(__file__).resolve().parent / "demo_findings" / "forensics"
PREFIX = "demo"
SERVICES = (
    "autoscaling",
    "cloudwatch",
    "ec2",
    "elbv2",
    "events",
    "iam",
    "kms",
    "lambda",
    "logs",
    "s3",
    "sfn",
    "sns",
    "sqs",
    "ssm",
    "sts",
)
# What the stand-in SSM agent "finds" on the instance (a miner and its pool connection).
ARTEFACTS = {
    "processes.txt": "USER PID %CPU COMMAND\nroot 1 0.0 /sbin/init\n"
    "ec2-user 4242 97.3 /tmp/.x/xmrig -o pool.example.net:3333\n",
    "network.txt": 'tcp ESTAB 10.44.1.10:51422 198.51.100.23:3333 users:(("xmrig",pid=4242))\n',
    "logins.txt": "ec2-user pts/0 203.0.113.50 Thu Nov 20 08:58\n",
}


@dataclass
class StepLine:
    state: str
    status: str
    actions: list[str]


@dataclass
class Isolation:
    finding: str
    instance_id: str = ""
    outcome: str = ""
    steps: list[StepLine] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    evidence: list[tuple[str, int, str]] = field(default_factory=list)  # key, bytes, sha256
    report_title: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def root_configuration(directory: Path, endpoint: str, layer_zip: Path) -> None:
    """The forensics module beside an Auto Scaling group behind a target group."""
    config = {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.100, < 7.0"}}
        },
        "provider": {
            "aws": {
                "region": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "skip_credentials_validation": True,
                "skip_metadata_api_check": True,
                "s3_use_path_style": True,
                "max_retries": 3,
                "endpoints": {service: endpoint for service in SERVICES},
            }
        },
        "resource": {
            # moto rejects unknown layer ARNs, so the demo publishes a stand-in layer.
            "aws_lambda_layer_version": {
                "powertools": {
                    "layer_name": f"{PREFIX}-forensics-powertools-stand-in",
                    "filename": str(layer_zip),
                    "compatible_runtimes": ["python3.12"],
                }
            },
            "aws_vpc": {"this": {"cidr_block": "10.44.0.0/16"}},
            "aws_subnet": {
                "web": {
                    "vpc_id": "${aws_vpc.this.id}",
                    "cidr_block": "10.44.1.0/24",
                    "availability_zone": "us-east-1a",
                }
            },
            "aws_security_group": {"web": {"name": "web", "vpc_id": "${aws_vpc.this.id}"}},
            "aws_iam_role": {
                "web": {
                    "name": "web-server",
                    "assume_role_policy": json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "sts:AssumeRole",
                                    "Principal": {"Service": "ec2.amazonaws.com"},
                                }
                            ],
                        }
                    ),
                }
            },
            "aws_iam_instance_profile": {
                "web": {"name": "web-server", "role": "${aws_iam_role.web.name}"}
            },
            "aws_launch_template": {
                "web": {
                    "name": "web",
                    "image_id": "ami-760aaa0f",  # an Amazon Linux image moto knows
                    "instance_type": "t3.micro",
                    "vpc_security_group_ids": ["${aws_security_group.web.id}"],
                    "iam_instance_profile": {"name": "${aws_iam_instance_profile.web.name}"},
                    "block_device_mappings": [
                        {
                            "device_name": "/dev/xvdb",
                            "ebs": {"volume_size": 8, "delete_on_termination": "true"},
                        }
                    ],
                }
            },
            "aws_lb_target_group": {
                "web": {
                    "name": "web",
                    "port": 80,
                    "protocol": "HTTP",
                    "vpc_id": "${aws_vpc.this.id}",
                    "target_type": "instance",
                }
            },
            "aws_autoscaling_group": {
                "web": {
                    "name": "web",
                    "min_size": 1,
                    "max_size": 2,
                    "desired_capacity": 1,
                    "vpc_zone_identifier": ["${aws_subnet.web.id}"],
                    "target_group_arns": ["${aws_lb_target_group.web.arn}"],
                    "launch_template": {
                        "id": "${aws_launch_template.web.id}",
                        "version": "$Latest",
                    },
                    "wait_for_capacity_timeout": "0",
                }
            },
            "aws_sns_topic": {"reports": {"name": f"{PREFIX}-forensics-reports"}},
            "aws_sqs_queue": {"reports": {"name": f"{PREFIX}-forensics-inbox"}},
            "aws_sns_topic_subscription": {
                "reports": {
                    "topic_arn": "${aws_sns_topic.reports.arn}",
                    "protocol": "sqs",
                    "endpoint": "${aws_sqs_queue.reports.arn}",
                }
            },
        },
        "module": {
            "forensics": {
                "source": str(DIST / "modules" / "forensics"),
                "name_prefix": PREFIX,
                "create_guardduty_rule": True,
                "evidence_retention_days": 1,
                "evidence_bucket_force_destroy": True,
                "notify_topic_arn": "${aws_sns_topic.reports.arn}",
                "powertools_layer_arn": "${aws_lambda_layer_version.powertools.arn}",
            }
        },
        "output": {
            "state_machine_arn": {"value": "${module.forensics.state_machine_arn}"},
            "function_arn": {"value": "${module.forensics.forensics_function_arn}"},
            "bucket": {"value": "${module.forensics.evidence_bucket_name}"},
            "target_group_arn": {"value": "${aws_lb_target_group.web.arn}"},
            "reports_url": {"value": "${aws_sqs_queue.reports.url}"},
        },
    }
    (directory / "main.tf.json").write_text(json.dumps(config, indent=2))


def run(progress: Callable[[str], None] = lambda _: None) -> Isolation:
    """Apply, isolate the group's instance through the workflow, show it, destroy."""
    import boto3

    with scoped_environ({"POWERTOOLS_LOG_LEVEL": "WARNING"}):
        from functions.common import aws
        from functions.forensics import handler, workflow

    finding = json.loads(next(FINDING.glob("*.json")).read_text())
    result = Isolation(
        finding=f"{finding['detail']['type']} (severity {finding['detail']['severity']})"
    )
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="playbook-demo-")))
        server = stack.enter_context(moto_server())
        stack.enter_context(pointed_at(server.endpoint))
        stack.enter_context(executing_state_machines(server.endpoint))
        stack.enter_context(bucket_policies_over_tls())
        agent = SsmAgentStandIn(lambda name, _: ARTEFACTS[name].encode())
        stack.enter_context(mock.patch.object(*agent.patch()))
        layer = scratch / "layer.zip"
        with zipfile.ZipFile(layer, "w") as archive:
            archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
        root_configuration(scratch, server.endpoint, layer)

        def client(service: str) -> Any:
            return boto3.client(service, region_name="us-east-1", endpoint_url=server.endpoint)

        started = time.perf_counter()
        progress("terraform init (forensics)")
        _run(["init", "-input=false", "-no-color"], scratch)
        progress("terraform apply (forensics module + Auto Scaling group into moto)")
        _run(["apply", "-input=false", "-no-color", "-auto-approve"], scratch)
        out = {k: v["value"] for k, v in json.loads(_run(["output", "-json"], scratch)).items()}
        result.timings["apply"] = time.perf_counter() - started

        started = time.perf_counter()
        group = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
        instance_id = group["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        result.instance_id = instance_id
        _ensure_attached(client, instance_id, out["target_group_arn"])
        finding["detail"]["resource"]["instanceDetails"]["instanceId"] = instance_id

        function = client("lambda").get_function_configuration(FunctionName=out["function_arn"])
        context: Any = InProcessContext.of(function["FunctionArn"])
        aws.reset()
        aws.session().events.register(
            "before-call.ssm.DescribeInstanceInformation",
            instance_information_stand_in({instance_id: "Online"}),
            unique_id="demo-ssm-managed",
        )

        def step(event: dict[str, Any]) -> Any:
            with scoped_environ(function["Environment"]["Variables"]):
                return handler.lambda_handler(event, context)

        sfn = client("stepfunctions")
        progress(f"GuardDuty {finding['detail']['type']} -> isolation workflow")
        with lambda_runs_in_process({function["FunctionName"]: step}):
            execution = sfn.start_execution(
                stateMachineArn=out["state_machine_arn"],
                name=f"demo-{uuid.uuid4()}",
                input=json.dumps(finding),
            )["executionArn"]
            described = finish(sfn, execution)
        aws.reset()
        result.outcome = described["status"]
        output = json.loads(described.get("output") or "{}")
        instances = output.get("outcome", {}).get("instances", [])
        steps = instances[0]["steps"] if instances else {}
        for name, state in workflow.STATE_NAMES.items():
            if "result" in steps.get(name, {}):  # steps that ran (not the placeholder)
                record = steps[name]["result"]
                result.steps.append(StepLine(state, record["status"], record.get("actions", [])))
        result.after = _after(client, instance_id, out["target_group_arn"])
        result.evidence = _evidence(client("s3"), out["bucket"])
        messages = client("sqs").receive_message(QueueUrl=out["reports_url"], WaitTimeSeconds=1)
        for message in messages.get("Messages", []):
            result.report_title = json.loads(json.loads(message["Body"])["Message"])["detail"][
                "title"
            ]
        result.timings["workflow"] = time.perf_counter() - started

        started = time.perf_counter()
        progress("terraform destroy (forensics)")
        # moto refuses to remove a lock configuration from a bucket holding objects (AWS
        # does not); the evidence goes first, as force_destroy's governance bypass would.
        s3 = client("s3")
        for version in s3.list_object_versions(Bucket=out["bucket"]).get("Versions", []):
            s3.delete_object(
                Bucket=out["bucket"],
                Key=version["Key"],
                VersionId=version["VersionId"],
                BypassGovernanceRetention=True,
            )
        _run(["destroy", "-input=false", "-no-color", "-auto-approve"], scratch)
        result.timings["destroy"] = time.perf_counter() - started
    return result


def _ensure_attached(client: Callable[[str], Any], instance_id: str, target_group: str) -> None:
    """What AWS does at launch and moto may not: associate the launch template's instance
    profile, and register the group's instance with the group's target group."""
    ec2 = client("ec2")
    associations = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]
    if not associations:
        ec2.associate_iam_instance_profile(
            IamInstanceProfile={"Name": "web-server"}, InstanceId=instance_id
        )
    health = client("elbv2").describe_target_health(TargetGroupArn=target_group)
    if instance_id not in [t["Target"]["Id"] for t in health["TargetHealthDescriptions"]]:
        client("elbv2").register_targets(
            TargetGroupArn=target_group, Targets=[{"Id": instance_id, "Port": 80}]
        )


def _after(client: Callable[[str], Any], instance_id: str, target_group: str) -> list[str]:
    from functions.common import sessions

    ec2, iam = client("ec2"), client("iam")
    group = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
        "AutoScalingGroups"
    ][0]
    members = ", ".join(i["InstanceId"] for i in group["Instances"]) or "none"
    targets = client("elbv2").describe_target_health(TargetGroupArn=target_group)
    registered = ", ".join(t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]) or "none"
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    protected = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="disableApiTermination"
    )["DisableApiTermination"]["Value"]
    profiles = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]
    associated = [a for a in profiles if a["State"] == "associated"]
    revocation = iam.get_role_policy(RoleName="web-server", PolicyName="AWSRevokeOlderSessions")
    cutoff = revocation["PolicyDocument"]["Statement"][0]["Condition"]["DateLessThan"]
    tags = {
        t["Key"]: t["Value"] for t in instance.get("Tags", []) if t["Key"].startswith("forensics:")
    }
    return [
        f"Auto Scaling group web: desired {group['DesiredCapacity']}, members {members} "
        "(a replacement took its place)",
        f"target group web: registered {registered}",
        f"termination protection: {'on' if protected else 'off'}; "
        f"instance profile: {'still attached' if associated else 'none'}",
        f"role web-server: {sessions.POLICY_NAME} denies sessions issued before "
        f"{cutoff['aws:TokenIssueTime']}",
        f"tags on {instance_id}: " + ", ".join(f"{k}={v[:24]}" for k, v in sorted(tags.items())),
    ]


def _evidence(s3: Any, bucket: str) -> list[tuple[str, int, str]]:
    found = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        head = s3.head_object(Bucket=bucket, Key=item["Key"], ChecksumMode="ENABLED")
        digest = base64.b64decode(head["ChecksumSHA256"]).hex() if "ChecksumSHA256" in head else ""
        found.append((item["Key"], int(item["Size"]), digest))
    return sorted(found)
