"""Apply the generated forensics module into a moto server with the real Terraform CLI and
AWS provider (pytest-terraform), beside an instance with an instance profile; run the
applied state machine on it; probe the triggers; plan again; destroy.

moto applies every resource of this module (Object Lock bucket and its configuration,
SSM documents, Step Functions state machine with logging and tracing, EventBridge rules
with a role), so nothing here is plan-only. What moto cannot do, and what this test does:
- It executes state machines only when asked: the server is told to
  (``execute_state_machine``) for this module's life, and its interpreter runs the
  applied definition.
- Lambda invoke needs Docker: the state machine's invocations of the applied function
  run the real handler in-process, with the applied function's own environment
  (bundle/motoworkflow.py).
- SSM DescribeInstanceInformation is not implemented: a botocore hook answers it (the
  instance is not managed), so the volatile-evidence step is skipped with its reason.
- moto does not implement ValidateStateMachineDefinition nor ListStateMachineVersions,
  which the provider calls around creating a state machine: they are answered from moto's
  own ASL parser and version list (bundle/motoworkflow.validation_answered).
- moto evaluates the bucket policy's TLS-only Deny without its condition, so every
  request over moto's http would be denied: requests are taken as TLS, as against AWS
  (bundle/motoworkflow.bucket_policies_over_tls).
- moto's EventBridge does not deliver to Step Functions targets and has no
  TestEventPattern: the rules' targets are swapped for an SQS probe (conftest).
- moto drops Lambda DeadLetterConfig, so a second plan wants to set it again; that is the
  only difference allowed.
- moto refuses to remove a lock configuration from a bucket holding objects: the test
  empties the bucket (governance bypass) before destroy.
- moto rejects unknown layer ARNs: the root configuration publishes a stand-in layer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_terraform import terraform

from bundle.motoserver import InProcessContext, scoped_environ
from bundle.motoworkflow import (
    bucket_policies_over_tls,
    entered_states,
    executing_state_machines,
    failures,
    finish,
    instance_information_stand_in,
    lambda_runs_in_process,
)
from functions.forensics import workflow
from tests.terraform.conftest import MotoStack, finding, outputs, planned_changes, probe_rules

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "forensics_apply"
STACK: list[MotoStack] = []


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> Iterator[None]:
    STACK[:] = [moto_stack]
    # Before the apply: moto keeps state machines of the executing backend apart.
    with executing_state_machines(moto_stack.endpoint), bucket_policies_over_tls():
        yield


# No teardown destroy: test_destroy_leaves_nothing destroys and checks, and the moto server
# (all that was applied) ends with the module; a second destroy would cost a provider run.
terraform("forensics_apply", scope="module", teardown=terraform.TEARDOWN_OFF)


def client(service: str) -> Any:
    return STACK[0].client(service)


def test_applied_bucket_state_machine_and_names(forensics_apply: Any) -> None:
    out = outputs(forensics_apply)
    s3 = client("s3")
    bucket = out["evidence_bucket_name"]
    assert bucket == "forensicsapply-evidence-123456789012-us-east-1"
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", 1)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    blocked = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(blocked.values())
    machine = client("stepfunctions").describe_state_machine(
        stateMachineArn=out["state_machine_arn"]
    )
    assert json.loads(machine["definition"]) == workflow.definition(out["forensics_function_arn"])
    assert machine["type"] == "STANDARD"
    roles = {r["RoleName"] for r in client("iam").list_roles()["Roles"]}
    assert {
        "forensicsapply-forensics-us-east-1",
        "forensicsapply-forensics-workflow-us-east-1",
        "forensicsapply-forensics-start-us-east-1",
    } <= roles
    assert out["evidence_writer_policy_arn"].endswith(
        ":policy/forensicsapply-forensics-evidence-writer-us-east-1"
    )


def test_applied_workflow_isolates_the_instance(forensics_apply: Any) -> None:
    out = outputs(forensics_apply)
    instance_id = out["instance_id"]
    function = client("lambda").get_function_configuration(
        FunctionName=out["forensics_function_arn"]
    )
    context: Any = InProcessContext.of(function["FunctionArn"])

    from functions.common import aws
    from functions.forensics import handler

    aws.reset()
    aws.session().events.register(
        "before-call.ssm.DescribeInstanceInformation",
        instance_information_stand_in({}),
        unique_id="tests-ssm-managed",
    )

    def run_step(event: dict[str, Any]) -> Any:
        with scoped_environ(function["Environment"]["Variables"]):
            return handler.lambda_handler(event, context)

    sfn = client("stepfunctions")
    start = {
        "action": "isolate",
        "instanceId": instance_id,
        "caseId": "IR-apply-1",
        "reason": "apply test",
    }
    with lambda_runs_in_process({function["FunctionName"]: run_step}):
        execution = sfn.start_execution(
            stateMachineArn=out["state_machine_arn"],
            name=str(uuid.uuid4()),
            input=json.dumps(start),
        )["executionArn"]
        described = finish(sfn, execution)
    aws.reset()
    assert described["status"] == "SUCCEEDED", failures(sfn, execution)
    assert "Isolate network" in entered_states(sfn, execution)

    ec2 = client("ec2")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["forensics:case-id"] == "IR-apply-1"
    assert tags["forensics:capture_volatile"].startswith("skipped not managed by SSM")
    assert tags["forensics:isolate_network"].startswith("done")
    isolation = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["forensicsapply-forensics-isolation"]}]
    )["SecurityGroups"]
    assert len(isolation) == 1 and isolation[0]["IpPermissionsEgress"] == []
    # moto lists an ENI's groups together with the instance's launch groups, so the
    # isolation group shows beside the original one here (AWS shows it alone).
    (eni,) = instance["NetworkInterfaces"]
    assert isolation[0]["GroupId"] in {g["GroupId"] for g in eni["Groups"]}
    keys = {
        o["Key"]
        for o in client("s3").list_objects_v2(Bucket=out["evidence_bucket_name"])["Contents"]
    }
    prefix = f"cases/IR-apply-1/{instance_id}"
    assert {
        f"{prefix}/instance.json",
        f"{prefix}/report.json",
        f"{prefix}/original-security-groups.json",
    } <= keys
    policy = client("iam").get_role_policy(
        RoleName="forensicsapply-web", PolicyName="AWSRevokeOlderSessions"
    )
    assert policy["PolicyDocument"]["Statement"][0]["Effect"] == "Deny"
    reports = client("sqs").receive_message(QueueUrl=out["reports_url"], WaitTimeSeconds=1)
    (message,) = reports["Messages"]
    report = json.loads(json.loads(message["Body"])["Message"])
    assert report["detail"]["title"] == f"{instance_id} isolated (IR-apply-1)"


def test_triggers_match_the_right_events(forensics_apply: Any) -> None:
    out = outputs(forensics_apply)
    rules = ["forensicsapply-forensics-guardduty", "forensicsapply-forensics-security-hub"]
    routed = probe_rules(STACK[0], rules)
    try:
        backdoor = finding("gd_forensics_backdoor_cc.json")
        assert routed(backdoor) == {rules[0]}
        probe = finding("guardduty_ec2_port_probe.json")  # our instance is the target
        assert routed(probe) == set()
        action = json.loads(
            (
                Path(__file__).parents[1] / "events" / "securityhub_findings_custom_action.json"
            ).read_text()
        )
        action["resources"] = [
            "arn:aws:securityhub:us-east-1:123456789012:action/custom/IsolateInstance"
        ]
        assert routed(action) == {rules[1]}
        action["resources"] = [
            "arn:aws:securityhub:us-east-1:123456789012:action/custom/SendToSlack"
        ]
        assert routed(action) == set()
    finally:
        routed.restore()  # type: ignore[attr-defined]
    targets = client("events").list_targets_by_rule(Rule=rules[0])["Targets"]
    assert targets[0]["Arn"] == out["state_machine_arn"] and targets[0]["RoleArn"]


def test_plan_after_apply_changes_nothing(forensics_apply: Any) -> None:
    function = "module.forensics.aws_lambda_function.forensics[0]"
    assert planned_changes(forensics_apply, ROOT_CONFIG) == {
        function: {"update", "dead_letter_config"},
        # The workflow tagged the instance it isolated (forensics:*) and took its instance
        # profile away: the root's own instance drifts, as it would in an account.
        "aws_instance.web": {"update", "tags", "tags_all", "iam_instance_profile"},
    }


def test_destroy_leaves_nothing(forensics_apply: Any) -> None:
    # Destroying the lock configuration puts one without a rule; moto refuses that on a
    # bucket holding objects ("Bucket needs to be empty"), AWS does not. So the evidence
    # goes first, as a governance-mode bypass (what force_destroy does) would remove it.
    s3, bucket = client("s3"), outputs(forensics_apply)["evidence_bucket_name"]
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    for version in versions:
        s3.delete_object(
            Bucket=bucket,
            Key=version["Key"],
            VersionId=version["VersionId"],
            BypassGovernanceRetention=True,
        )
    assert versions, "the workflow kept evidence"
    forensics_apply.terraform.destroy()
    assert not client("s3").list_buckets()["Buckets"]
    assert not client("stepfunctions").list_state_machines()["stateMachines"]
    assert not client("lambda").list_functions()["Functions"]
    assert not client("events").list_rules(NamePrefix="forensicsapply-")["Rules"]
