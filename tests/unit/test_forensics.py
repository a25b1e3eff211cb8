"""The forensics isolation steps against in-process moto (EC2, Auto Scaling, ELBv2, IAM,
SSM, S3, SNS, snapshots), run by the state machine itself.

Executions run in moto's Step Functions interpreter (``execute_state_machine``); each
``lambda:invoke`` task runs the real handler in-process (``bundle/motoworkflow``).
What moto lacks and what stands in for it is listed in ``tests/unit/forensics_world.py``
and named again in each test that relies on it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundle.motoworkflow import entered_states
from functions.common import aws, permissions, sessions
from functions.forensics import logic
from functions.forensics.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls
from tests.unit.forensics_world import (
    BUCKET,
    ISOLATE_ACTION,
    NOW,
    TERMINATE_ACTION,
    World,
    load_event,
    world,
)

pytestmark = pytest.mark.unit
__all__ = ["world"]  # the fixture, imported for pytest

INSTANCE = "i-0123abcd4567ef890"
IAM_ACTION_OF = {"s3:HeadObject": "s3:GetObject"}
STEP_STATES = [
    "Protect instance and volumes",
    "Detach from Auto Scaling and target groups",
    "Capture volatile evidence",
    "Snapshot volumes",
    "Revoke instance credentials",
    "Isolate network",
    "Copy snapshots with evidence key",
    "Report",
]


def operator(world: World, action: str = "isolate", **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "instanceId": world.instance_id,
        "caseId": "IR-2025-042",
        "reason": "cryptominer seen by the on-call engineer",
        **extra,
    }


def step_results(world: World, execution: dict[str, Any]) -> dict[str, Any]:
    output = json.loads(execution["output"])
    (instance,) = output["outcome"]["instances"]
    # Terminate, when not asked for, is only a placeholder without a result.
    return {name: step["result"] for name, step in instance["steps"].items() if "result" in step}


# --------------------------------------------------------------------------- the whole run


def test_isolation_runs_every_step_in_order(world: World) -> None:
    execution = world.execute(operator(world))
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    states = entered_states(world.sfn, execution["executionArn"])
    assert [s for s in states if s in STEP_STATES] == STEP_STATES
    instance_id = world.instance_id
    tags = world.tags()
    assert tags[logic.CASE_TAG] == "IR-2025-042"
    for step in (
        "protect",
        "contain",
        "capture_volatile",
        "snapshot",
        "revoke_credentials",
        "isolate_network",
    ):
        assert tags[f"forensics:{step}"].startswith("done"), step
    assert tags["forensics:copy_snapshots"].startswith("skipped copies not asked for")

    # 1. protection; volumes kept on termination
    attribute = world.ec2.describe_instance_attribute
    assert attribute(InstanceId=instance_id, Attribute="disableApiTermination")[
        "DisableApiTermination"
    ]["Value"]
    assert attribute(InstanceId=instance_id, Attribute="disableApiStop")["DisableApiStop"]["Value"]
    mappings = world.instance()["BlockDeviceMappings"]
    assert mappings and not any(m["Ebs"]["DeleteOnTermination"] for m in mappings)

    # 2. out of the group, desired capacity kept (moto launches the replacement); out of
    # the target group
    group = world.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
        "AutoScalingGroups"
    ][0]
    assert group["DesiredCapacity"] == 1
    members = [i["InstanceId"] for i in group["Instances"]]
    assert instance_id not in members and len(members) == 1, "a replacement came up"
    targets = world.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    assert instance_id not in [t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]]

    # 3. volatile evidence with its sha256 (the fake SSM agent uploaded it; moto runs nothing)
    evidence = world.evidence()
    prefix = f"cases/IR-2025-042/{instance_id}"
    for name in ("processes.txt", "network.txt", "logins.txt"):
        assert f"{prefix}/volatile/{name}" in evidence
    results = step_results(world, execution)
    kept = results["capture_volatile"]["details"]["artefacts"]
    assert {a["sha256"] for a in kept} == {evidence[a["key"]] for a in kept}
    assert results["capture_volatile"]["details"]["skipped"] == [
        {"name": "memory.lime", "reason": "neither AVML nor LiME is installed"}
    ]
    assert f"{prefix}/instance.json" in evidence and f"{prefix}/report.json" in evidence

    # 4. one snapshot per volume, tagged with the case and finding
    snapshots = world.snapshots()
    volumes = {m["Ebs"]["VolumeId"] for m in mappings}
    assert {s["VolumeId"] for s in snapshots} == volumes and len(snapshots) == len(volumes)
    for snapshot in snapshots:
        tags_of = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
        assert tags_of[logic.CASE_TAG] == "IR-2025-042"
        assert tags_of["forensics:instance-id"] == instance_id

    # 5. no instance profile; the role's older sessions are denied
    associations = world.ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]
    assert not [a for a in associations if a["State"] == "associated"]
    policy = world.iam.get_role_policy(
        RoleName=world.role_name, PolicyName="AWSRevokeOlderSessions"
    )
    assert policy["PolicyDocument"] == sessions.revocation_policy(NOW)

    # 6. every ENI in the isolation group only; both groups exist with the right rules
    isolation = results["isolate_network"]["details"]["isolationGroup"]
    allow_all = results["isolate_network"]["details"]["allowAllGroup"]
    assert all(groups == [isolation] for groups in world.eni_groups().values())
    groups = {
        g["GroupId"]: g
        for g in world.ec2.describe_security_groups(GroupIds=[isolation, allow_all])[
            "SecurityGroups"
        ]
    }
    assert (
        groups[isolation]["IpPermissions"] == [] and groups[isolation]["IpPermissionsEgress"] == []
    )
    assert any(
        p["IpProtocol"] == "-1" and {"CidrIp": "0.0.0.0/0"} in p.get("IpRanges", [])
        for p in groups[allow_all]["IpPermissions"]
    )
    assert results["isolate_network"]["details"]["originalGroups"] == {
        eni: [world.web_group] for eni in world.eni_groups()
    }

    # 7. the step report went to the notify topic
    (report,) = world.reports()
    assert report["source"] == "playbook.forensics"
    assert report["detail"]["title"] == f"{instance_id} isolated (IR-2025-042)"
    assert any(line.startswith("isolate_network: done") for line in report["detail"]["actions"])


def test_swap_goes_through_allow_all_before_isolation(world: World) -> None:
    """Tracked connections are cut only if the ENI passes through an allow-all group."""
    seen: list[list[str]] = []
    aws.reset()
    world.rehook()
    aws.session().events.register(
        "before-parameter-build.ec2.ModifyNetworkInterfaceAttribute",
        lambda params, **_: seen.append(params["Groups"]),
        unique_id="tests-record-swap",
    )
    for step in ("protect", "isolate_network"):
        world.step(step)
    record = world.step("isolate_network")  # repeated: nothing more is modified
    allow_all, isolation = record["details"]["allowAllGroup"], record["details"]["isolationGroup"]
    assert seen == [[allow_all], [isolation]] * len(world.eni_groups())
    assert record["repeated"] is True


# --------------------------------------------------------------------------- re-runs


def test_rerun_repeats_nothing(world: World) -> None:
    first = world.execute(operator(world))
    assert first["status"] == "SUCCEEDED"
    snapshots, commands = world.snapshots(), list(world.agent.commands)
    policy = world.iam.get_role_policy(
        RoleName=world.role_name, PolicyName="AWSRevokeOlderSessions"
    )
    world.reports()

    second = world.execute(operator(world))
    assert second["status"] == "SUCCEEDED"
    results = step_results(world, second)
    for step in (
        "protect",
        "contain",
        "capture_volatile",
        "snapshot",
        "revoke_credentials",
        "isolate_network",
        "copy_snapshots",
    ):
        assert results[step]["repeated"] is True, step
    assert world.snapshots() == snapshots, "no second snapshot"
    assert world.agent.commands == commands, "no second SSM command"
    again = world.iam.get_role_policy(RoleName=world.role_name, PolicyName="AWSRevokeOlderSessions")
    assert again["PolicyDocument"] == policy["PolicyDocument"]


def test_rerun_after_a_partial_failure_finishes_the_rest(world: World) -> None:
    def iam_down(_: dict[str, Any]) -> None:
        raise ClientError(
            {"Error": {"Code": "ServiceFailure", "Message": "injected"}}, "PutRolePolicy"
        )

    world.failures["revoke_credentials"] = iam_down
    failed = world.execute(operator(world))
    assert failed["status"] == "FAILED" and failed["error"] == "IsolationIncomplete"
    tags = world.tags()
    assert [k for k in tags if k.startswith("forensics:") and tags[k].startswith("done")] == [
        "forensics:protect",
        "forensics:contain",
        "forensics:capture_volatile",
        "forensics:snapshot",
    ]
    (failure,) = world.reports()
    assert failure["detail"]["title"].startswith(f"Isolation of {world.instance_id} failed")
    assert any("ServiceFailure" in line for line in failure["detail"]["actions"])
    snapshots = world.snapshots()

    del world.failures["revoke_credentials"]
    rerun = world.execute(operator(world))
    assert rerun["status"] == "SUCCEEDED", rerun.get("cause")
    results = step_results(world, rerun)
    assert [s for s in results if results[s].get("repeated")] == [
        "protect",
        "contain",
        "capture_volatile",
        "snapshot",
    ]
    assert results["revoke_credentials"]["repeated"] is False
    assert results["isolate_network"]["status"] == "done"
    assert world.snapshots() == snapshots


def test_a_role_the_workflow_may_not_touch_is_reported_and_isolation_goes_on(
    world: World,
) -> None:
    """IAM answers AccessDenied for a role outside instance_role_arns (injected: moto does
    not evaluate the caller's policies in-process)."""

    def denied(model: Any, **_: Any) -> None:
        if model.name == "PutRolePolicy":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, model.name)

    aws.reset()
    world.rehook()
    aws.session().events.register("before-call.iam", denied, unique_id="tests-deny-iam")
    execution = world.execute(operator(world))
    assert execution["status"] == "SUCCEEDED"
    revoke = step_results(world, execution)["revoke_credentials"]
    assert revoke["details"]["notRevoked"] == [world.role_name]
    assert any(a.startswith("NOT revoked: sessions of role") for a in revoke["actions"])
    assert world.tags()["forensics:isolate_network"].startswith("done")


def test_a_failed_swap_restores_the_original_groups(world: World) -> None:
    """The ENI's groups are changed, then the step fails: the catch puts them back."""
    calls = {"n": 0}

    def fail_after_allow_all(model: Any, **_: Any) -> None:
        if model.name == "ModifyNetworkInterfaceAttribute" and calls["n"] < 2:
            calls["n"] += 1
            if calls["n"] == 2:  # the move from allow-all to isolation
                raise ClientError(
                    {"Error": {"Code": "InternalError", "Message": "injected"}}, model.name
                )

    aws.reset()  # clients copy the session's hooks when created: register first
    world.rehook()
    aws.session().events.register(
        "before-call.ec2", fail_after_allow_all, unique_id="tests-fail-swap"
    )
    execution = world.execute(operator(world))
    assert execution["status"] == "FAILED"
    states = entered_states(world.sfn, execution["executionArn"])
    assert states.index("Isolate network") < states.index("Restore security groups")
    assert "Report failure" in states and "Copy snapshots with evidence key" not in states
    assert set(map(tuple, world.eni_groups().values())) == {(world.web_group,)}
    assert world.tags()["forensics:isolate_network"].startswith("rolled-back")
    (failure,) = world.reports()
    assert "InternalError" in " ".join(failure["detail"]["actions"])


# --------------------------------------------------------------------------- terminate


def test_terminate_refused_without_snapshots_or_evidence(world: World) -> None:
    refused = world.step("terminate", world.target("terminate"))
    assert refused["status"] == "refused"
    volumes = sorted(m["Ebs"]["VolumeId"] for m in world.instance()["BlockDeviceMappings"])
    for volume in volumes:
        assert f"no snapshot of {volume}" in refused["details"]["reason"]
    assert "instance description is not in the evidence bucket" in refused["details"]["reason"]
    assert "volatile evidence was neither captured nor skipped" in refused["details"]["reason"]
    assert world.instance()["State"]["Name"] == "running"


def test_terminate_refused_when_evidence_changed(world: World) -> None:
    """An artefact whose object no longer matches its sha256 blocks the termination."""
    for step in ("protect", "capture_volatile", "snapshot"):
        world.step(step)
    kept = world.step("capture_volatile")["details"]["artefacts"][0]
    world.s3.put_object(
        Bucket=BUCKET, Key=kept["key"], Body=b"overwritten", ChecksumAlgorithm="SHA256"
    )
    refused = world.step("terminate", world.target("terminate"))
    assert refused["status"] == "refused"
    assert f"evidence {kept['key']} is missing or changed" in refused["details"]["reason"]


def test_terminate_waits_for_pending_snapshots(world: World) -> None:
    from moto.ec2.models import ec2_backends

    for step in ("protect", "capture_volatile", "snapshot"):
        world.step(step)
    backend = ec2_backends["123456789012"]["us-east-1"]
    first = world.snapshots()[0]["SnapshotId"]
    backend.snapshots[first].status = "pending"  # moto completes snapshots at once
    with pytest.raises(logic.EvidencePending, match=first):
        world.step("terminate", world.target("terminate"))
    assert world.instance()["State"]["Name"] == "running"


def test_terminate_action_isolates_then_terminates_keeping_the_volumes(world: World) -> None:
    event = security_hub_event(world.instance_id, TERMINATE_ACTION)
    execution = world.execute(event)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    states = entered_states(world.sfn, execution["executionArn"])
    assert states.index("Isolate network") < states.index("Terminate instance")
    assert world.instance()["State"]["Name"] in ("shutting-down", "terminated")
    volumes = {s["VolumeId"] for s in world.snapshots()}
    remaining = world.ec2.describe_volumes(VolumeIds=sorted(volumes))["Volumes"]
    assert {v["VolumeId"] for v in remaining} == volumes, "DeleteOnTermination was false"


def test_terminate_refusal_fails_the_execution_with_the_reason(world: World) -> None:
    def lose_instance_description(_: dict[str, Any]) -> None:
        key = f"cases/{_case(world)}/{world.instance_id}/instance.json"
        world.s3.delete_object(Bucket=BUCKET, Key=key)  # a delete marker: the key reads absent

    world.failures["terminate"] = lose_instance_description
    execution = world.execute(security_hub_event(world.instance_id, TERMINATE_ACTION))
    assert execution["status"] == "FAILED" and execution["error"] == "IsolationIncomplete"
    assert "Termination refused" in entered_states(world.sfn, execution["executionArn"])
    assert world.instance()["State"]["Name"] == "running"
    (report,) = world.reports()
    assert "termination refused" in report["detail"]["title"]


def _case(world: World) -> str:
    return world.tags()[logic.CASE_TAG]


# --------------------------------------------------------------------------- SSM


def test_instance_without_ssm_skips_volatile_evidence_with_the_reason(world: World) -> None:
    """moto has no DescribeInstanceInformation: the world's hook answers it (not managed)."""
    world.managed_instances.clear()
    execution = world.execute(operator(world))
    assert execution["status"] == "SUCCEEDED"
    volatile = step_results(world, execution)["capture_volatile"]
    assert volatile["status"] == "skipped"
    assert volatile["details"]["reason"].startswith("not managed by SSM")
    assert world.agent.commands == []
    assert world.tags()["forensics:capture_volatile"].startswith("skipped not managed by SSM")


def test_pending_commands_are_followed_not_resent(world: World) -> None:
    """The fake agent leaves the commands InProgress, then finishes them (moto's Run
    Command executes nothing and reports Success at once)."""
    world.agent.status = "InProgress"
    world.agent.memory_tool = True
    first = world.step("capture_volatile")
    assert first["status"] == "pending"
    assert world.tags()["forensics:capture_volatile"].startswith("pending")
    sent = list(world.agent.commands)
    assert len(sent) == 2 and world.step("capture_volatile")["status"] == "pending"
    assert world.agent.commands == sent, "no second send"
    world.agent.finish_all("123456789012", "us-east-1")
    done = world.step("capture_volatile")
    assert done["status"] == "done"
    assert {a["name"] for a in done["details"]["artefacts"]} == {
        "processes.txt",
        "network.txt",
        "logins.txt",
        "memory.lime",
    }


def test_evidence_whose_sha256_differs_is_not_counted(world: World) -> None:
    world.agent.tamper = True
    result = world.step("capture_volatile")
    assert result["details"]["artefacts"] == []
    assert all("sha256 mismatch" in s["reason"] for s in result["details"]["skipped"][:3])


# --------------------------------------------------------------------------- starts


def security_hub_event(
    instance_id: str, action_arn: str, source: str = "aws.securityhub"
) -> dict[str, Any]:
    """The documented custom-action event (tests/events), pointed at our instance."""
    event = load_event("securityhub_findings_custom_action.json")
    event |= {"source": source, "resources": [action_arn], "region": "us-east-1"}
    finding = event["detail"]["findings"][0]
    finding["Resources"][0]["Id"] = f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"
    return event


def test_guardduty_finding_starts_an_isolation(world: World) -> None:
    event = load_event("gd_forensics_backdoor_cc.json")
    event["detail"]["resource"]["instanceDetails"]["instanceId"] = world.instance_id
    execution = world.execute(event)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    case = logic.derived_case_id(event["detail"]["id"], world.instance_id)
    assert world.tags()[logic.CASE_TAG] == case
    assert world.tags()[logic.FINDING_TAG] == event["detail"]["id"]


def test_a_spoofed_finding_fails_the_execution_and_touches_nothing(world: World) -> None:
    event = load_event("gd_forensics_backdoor_cc.json")
    event["source"] = "my.app"
    event["detail"]["resource"]["instanceDetails"]["instanceId"] = world.instance_id
    execution = world.execute(event)
    assert execution["status"] == "FAILED" and execution["error"] == "EventRejected"
    assert "spoofed event: GuardDuty Finding from source 'my.app'" in execution["cause"]
    assert not any(k.startswith("forensics:") for k in world.tags()), "nothing touched"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda e: e["detail"].update(type="Recon:EC2/PortProbeUnprotectedPort"),
            "is not one the workflow isolates for",
        ),
        (
            lambda e: e["detail"]["resource"].update(resourceType="AccessKey"),
            "does not name an EC2 instance",
        ),
        (lambda e: e.update(source="aws.securityhub"), "spoofed event"),
    ],
)
def test_guardduty_findings_the_workflow_refuses(mutate: Any, reason: str) -> None:
    event = load_event("gd_forensics_backdoor_cc.json")
    mutate(event)
    assert reason in logic.normalise(event, _config())["reason"]


def test_brute_force_is_isolated_only_when_our_instance_attacks() -> None:
    """GuardDuty rates SSHBruteForce Low (2) when our instance is the target and High (8)
    when it is the attacker (guardduty_finding-types-ec2.html); the fixtures' shapes are
    GuardDuty's, their severities set here to the documented values."""
    config = logic.Config(
        evidence_bucket=BUCKET, guardduty_finding_types=("UnauthorizedAccess:EC2/SSHBruteForce",)
    )
    inbound = load_event("gd_waf_ssh_bruteforce_inbound.json")
    inbound["detail"]["severity"] = 2
    outbound = load_event("gd_waf_ssh_bruteforce_outbound.json")
    outbound["detail"]["severity"] = 8
    assert "our instance is the target" in logic.normalise(inbound, config)["reason"]
    accepted = logic.normalise(outbound, config)
    assert accepted["status"] == "accepted" and len(accepted["targets"]) == 1


def test_security_hub_isolate_action() -> None:
    event = security_hub_event(INSTANCE, ISOLATE_ACTION)
    event["detail"]["findings"].append(copy.deepcopy(event["detail"]["findings"][0]))
    event["detail"]["findings"][1]["Id"] += "-second"
    accepted = logic.normalise(event, _config())
    (target,) = accepted["targets"]  # two findings about one instance: one target
    assert target["action"] == "isolate" and target["instanceId"] == INSTANCE
    spoofed = logic.normalise(
        security_hub_event(INSTANCE, ISOLATE_ACTION, "aws.guardduty"), _config()
    )
    assert spoofed["reason"].startswith("spoofed event: Security Hub custom action")
    other = security_hub_event(
        INSTANCE, "arn:aws:securityhub:us-east-1:123456789012:action/custom/SendToSlack"
    )
    assert "is not Isolate or Terminate" in logic.normalise(other, _config())["reason"]


def _config() -> logic.Config:
    return logic.Config(
        evidence_bucket=BUCKET,
        isolate_action_arns=(ISOLATE_ACTION,),
        terminate_action_arns=(TERMINATE_ACTION,),
        guardduty_finding_types=("Backdoor:EC2/",),
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"action": "isolate", "instanceId": "i-0123456789abcdef0"}, "reason is required"),
        (
            {"action": "reboot", "instanceId": "i-0123456789abcdef0", "reason": "x"},
            "action must be",
        ),
        ({"action": "isolate", "instanceId": "vol-1", "reason": "x"}, "not an instance id"),
        ({"action": "isolate", "instanceIds": [], "reason": "x"}, "instanceIds must list"),
        (
            {
                "action": "isolate",
                "instanceId": "i-0123456789abcdef0",
                "reason": "x",
                "caseId": "a b",
            },
            "caseId must be",
        ),
        ([1, 2], "expected a JSON object"),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "unrecognised event"),
    ],
)
def test_operator_input_is_checked(event: Any, reason: str) -> None:
    assert reason in logic.normalise(event, _config())["reason"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "source",
                        "detail-type",
                        "detail",
                        "action",
                        "instanceId",
                        "resources",
                        "findings",
                        "type",
                        "id",
                        "resource",
                        "reason",
                    ]
                ),
                children,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_malformed_start_events_are_rejected_never_raise(event: Any) -> None:
    result = logic.normalise(event, _config())
    assert result["status"] in ("accepted", "rejected")


def test_a_step_without_a_valid_target_fails_clearly(world: World) -> None:
    with pytest.raises(logic.StepFailed, match=r"target\.instanceId is not an instance id"):
        world.step("protect", {"action": "isolate", "instanceId": "web-1", "caseId": "c"})
    with pytest.raises(logic.StepFailed, match="unknown step 'reboot'"):
        world.step("reboot")
    gone = world.target(instance_id="i-0123456789abcdef0")
    with pytest.raises(logic.StepFailed, match="does not exist"):
        world.step("protect", gone)


# --------------------------------------------------------------------------- sessions, permissions


def test_session_revocation_is_idempotent_and_only_moves_forward(world: World) -> None:
    from datetime import timedelta

    first = sessions.revoke_older_sessions(world.role_name, NOW)
    assert first.changed and first.cutoff == "2025-11-20T09:30:00Z"
    assert not sessions.revoke_older_sessions(world.role_name, NOW).changed
    assert not sessions.revoke_older_sessions(world.role_name, NOW - timedelta(hours=1)).changed
    later = sessions.revoke_older_sessions(world.role_name, NOW + timedelta(minutes=5))
    assert later.changed and later.cutoff == "2025-11-20T09:35:00Z"
    document = world.iam.get_role_policy(RoleName=world.role_name, PolicyName=sessions.POLICY_NAME)[
        "PolicyDocument"
    ]
    assert document["Statement"][0]["Condition"] == {
        "DateLessThan": {"aws:TokenIssueTime": "2025-11-20T09:35:00Z"}
    }


def test_every_aws_call_is_a_declared_permission(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.agent.memory_tool = True
    monkeypatch.setenv("REPORT_EVENT_BUS", "default")  # the report goes to the bus too
    with record_calls() as calls:
        world.rehook()
        execution = world.execute(security_hub_event(world.instance_id, TERMINATE_ACTION))
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    declared = permissions.actions(PERMISSIONS)
    # The recorder names calls by operation; S3 authorises HeadObject as s3:GetObject.
    actions = {IAM_ACTION_OF.get(call, call) for call in calls}
    assert {
        "ec2:ModifyNetworkInterfaceAttribute", "ec2:TerminateInstances", "events:PutEvents"
    } <= actions  # fmt: skip
    assert actions <= declared, f"undeclared: {sorted(actions - declared)}"
