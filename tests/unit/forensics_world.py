"""A compromised instance's world in in-process moto, for the forensics tests: a VPC, an
Auto Scaling group behind a target group, an instance profile, an Object Lock evidence
bucket, the state machine and the step Lambda, and stand-ins for what moto lacks.

What moto lacks, and what stands in (each named where it is used):

- SSM ``DescribeInstanceInformation`` is not implemented: :meth:`World.managed` answers
  that one call with the documented response shape through a botocore ``before-call``
  hook on the remediator's session (no other call is touched).
- SSM Run Command executes nothing (every invocation is ``Success`` with empty output):
  ``bundle.motoworkflow.SsmAgentStandIn`` plays the SSM agent on the instance, doing what
  the evidence documents do (upload each artefact with its SHA-256 checksum, print one
  JSON line per artefact) right after ``SendCommand``, by wrapping moto's backend method.
- moto's Lambda cannot run code without Docker: ``bundle/motoworkflow`` routes its
  Invoke to the real handler in-process.
- moto reports an ENI's groups as the union of the ENI's and the instance's launch groups
  (``NetworkInterface.group_set``), so after a swap the old group still shows beside the
  new one: :meth:`World.eni_groups` reads the ENI's own groups from moto's backend.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bundle.motoserver import FAKE_CREDENTIALS, InProcessContext
from bundle.motoworkflow import (
    EXECUTION_CONFIG,
    SsmAgentStandIn,
    finish,
    instance_information_stand_in,
    lambda_runs_in_process,
)
from functions.common import aws
from functions.forensics import handler, logic, workflow

REGION = "us-east-1"
AMAZON_LINUX_AMI = "ami-760aaa0f"  # in moto's default images (listing them all is slow)
ACCOUNT = "123456789012"
PREFIX = "unit"
BUCKET = f"{PREFIX}-evidence-{ACCOUNT}-{REGION}"
FUNCTION = f"{PREFIX}-forensics"
NOW = datetime(2025, 11, 20, 9, 30, tzinfo=UTC)
EVENTS = Path(__file__).resolve().parents[1] / "events"
ISOLATE_ACTION = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/IsolateInstance"
TERMINATE_ACTION = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/TerminateInstance"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


CONTEXT = InProcessContext.named(FUNCTION, memory_limit_in_mb=512, remaining_ms=300_000)


@dataclass
class World:
    ec2: Any
    autoscaling: Any
    elbv2: Any
    iam: Any
    s3: Any
    sqs: Any
    sfn: Any
    agent: SsmAgentStandIn
    instance_id: str
    group: str
    target_group_arn: str
    web_group: str
    vpc_id: str
    role_name: str
    reports_url: str
    function_arn: str
    managed_instances: dict[str, str]
    failures: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)
    state_machine_arn: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    # -------------------------------------------------------------- running
    def step(self, step: str, target: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """One step through the real handler, as the state machine invokes it."""
        payload = {"step": step, "target": target or self.target(), **extra}
        result: dict[str, Any] = handler.lambda_handler(payload, CONTEXT, now=lambda: NOW)
        return result

    def target(self, action: str = "isolate", instance_id: str | None = None) -> dict[str, Any]:
        instance = instance_id or self.instance_id
        return {
            "action": action,
            "instanceId": instance,
            "caseId": "IR-2025-042",
            "findingId": "8ec6f4a2b9d14c3e8f7a6b5c4d3e2f10",
            "findingType": "Backdoor:EC2/C&CActivity.B",
            "reason": "unit test",
        }

    def execute(self, start: dict[str, Any]) -> dict[str, Any]:
        """A whole execution of the state machine in moto, steps in the real handler."""

        def run(event: dict[str, Any]) -> Any:
            step = event.get("step", "")
            if step in self.failures:
                self.failures[step](event)
            return handler.lambda_handler(event, CONTEXT, now=lambda: NOW)

        if not self.state_machine_arn:  # parsing the definition takes moto a second
            self.state_machine_arn = self.sfn.create_state_machine(
                name=f"{PREFIX}-forensics-isolation",
                definition=json.dumps(workflow.definition(self.function_arn)),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/forensics",
            )["stateMachineArn"]
        with lambda_runs_in_process({FUNCTION: run}) as calls:
            # Named: moto names an unnamed execution "None", so a second one would clash
            # (AWS gives each a UUID).
            execution = self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=str(uuid.uuid4()),
                input=json.dumps(start),
            )["executionArn"]
            described = finish(self.sfn, execution)
        self.calls += calls
        return described

    def rehook(self) -> None:
        """(Re-)register the DescribeInstanceInformation stand-in on the remediator's
        session; call it after ``aws.reset()`` and before any client is created (clients
        copy the session's hooks when they are made)."""
        aws.session().events.register(
            "before-call.ssm.DescribeInstanceInformation",
            instance_information_stand_in(self.managed_instances),
            unique_id="tests-ssm-managed",
        )

    # -------------------------------------------------------------- reading
    def tags(self, instance_id: str | None = None) -> dict[str, str]:
        instance = self.instance(instance_id)
        return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}

    def instance(self, instance_id: str | None = None) -> dict[str, Any]:
        found = self.ec2.describe_instances(InstanceIds=[instance_id or self.instance_id])
        instance: dict[str, Any] = found["Reservations"][0]["Instances"][0]
        return instance

    def eni_groups(self, instance_id: str | None = None) -> dict[str, list[str]]:
        """Each ENI's own groups (moto's describe adds the launch groups: see above)."""
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][REGION]
        return {
            eni["NetworkInterfaceId"]: sorted(
                g.id for g in backend.enis[eni["NetworkInterfaceId"]]._group_set
            )
            for eni in self.instance(instance_id)["NetworkInterfaces"]
        }

    def evidence(self) -> dict[str, str]:
        """Every evidence object's key and the sha256 S3 holds for it."""
        found = {}
        for version in self.s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
            if not version["IsLatest"]:
                continue
            head = self.s3.head_object(Bucket=BUCKET, Key=version["Key"], ChecksumMode="ENABLED")
            found[version["Key"]] = base64.b64decode(head["ChecksumSHA256"]).hex()
        return found

    def snapshots(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        return [s for s in found if any(t["Key"] == logic.CASE_TAG for t in s.get("Tags", []))]

    def reports(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.reports_url, MaxNumberOfMessages=10)
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages.get("Messages", [])]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config=EXECUTION_CONFIG):  # type: ignore[arg-type]
        yield _build(monkeypatch)
    aws.reset()


def _build(monkeypatch: pytest.MonkeyPatch) -> World:
    client = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
    ec2, iam, s3, sqs, sns = (client(s) for s in ("ec2", "iam", "s3", "sqs", "sns"))
    autoscaling, elbv2, lam, sfn = (
        client(s) for s in ("autoscaling", "elbv2", "lambda", "stepfunctions")
    )
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24", AvailabilityZone="us-east-1a")
    subnet_id = subnet["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    role = iam.create_role(
        RoleName="web-server",
        AssumeRolePolicyDocument=json.dumps(
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
    )["Role"]
    profile = iam.create_instance_profile(InstanceProfileName="web-server")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="web-server", RoleName="web-server")
    image = AMAZON_LINUX_AMI
    ec2.create_launch_template(
        LaunchTemplateName="web",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "t3.micro",
            "SecurityGroupIds": [web],
            "IamInstanceProfile": {"Arn": profile["Arn"]},
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvdb", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}
            ],
        },
    )
    target_group = elbv2.create_target_group(
        Name="web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web",
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
        MinSize=1,
        MaxSize=3,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet_id,
        TargetGroupARNs=[target_group],
    )
    instance_id = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
        "AutoScalingGroups"
    ][0]["Instances"][0]["InstanceId"]
    # The launch template's profile, as EC2 associates it at launch.
    if not ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]:
        ec2.associate_iam_instance_profile(
            IamInstanceProfile={"Arn": profile["Arn"]}, InstanceId=instance_id
        )
    elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": instance_id, "Port": 80}])

    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    topic = sns.create_topic(Name=f"{PREFIX}-high")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{PREFIX}-reports")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    lambda_role = iam.create_role(RoleName="forensics", AssumeRolePolicyDocument="{}")["Role"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("functions/__init__.py", "")
    function_arn = lam.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=lambda_role["Arn"],
        Handler="functions.forensics.handler.lambda_handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]

    environment = {
        "EVIDENCE_BUCKET": BUCKET,
        "NAME_PREFIX": PREFIX,
        "NOTIFY_TOPIC_ARN": topic,
        "VOLATILE_DOCUMENT": f"{PREFIX}-forensics-volatile",
        "MEMORY_DOCUMENT": f"{PREFIX}-forensics-memory",
        "ISOLATE_ACTION_ARNS": json.dumps([ISOLATE_ACTION]),
        "TERMINATE_ACTION_ARNS": json.dumps([TERMINATE_ACTION]),
        "GUARDDUTY_FINDING_TYPES": json.dumps(
            ["Backdoor:EC2/", "CryptoCurrency:EC2/", "UnauthorizedAccess:EC2/SSHBruteForce"]
        ),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    agent = SsmAgentStandIn()
    monkeypatch.setattr(*agent.patch())
    managed = {instance_id: "Online"}
    aws.reset()
    built = World(
        ec2=ec2,
        autoscaling=autoscaling,
        elbv2=elbv2,
        iam=iam,
        s3=s3,
        sqs=sqs,
        sfn=sfn,
        agent=agent,
        instance_id=instance_id,
        group="web",
        target_group_arn=target_group,
        web_group=web,
        vpc_id=vpc,
        role_name=role["RoleName"],
        reports_url=queue,
        function_arn=function_arn,
        managed_instances=managed,
    )
    built.rehook()
    return built
