"""The responder against in-process moto IAM and SNS, with the fixtures' real ASFF shapes.

moto 5.2 has no Security Hub ``BatchUpdateFindings`` (it implements ``BatchImportFindings``
and ``GetFindings`` only), so every test here answers that one call with botocore's
Stubber on the responder's own Security Hub client, and the tests about it assert the exact
request the responder sends (identifiers, note, workflow status) against the service model.
Everything else (IAM users, keys, roles, inline policies, the report topic) is moto.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from bundle.motoserver import FAKE_CREDENTIALS
from functions.common import aws, permissions, sessions
from functions.responder import handler, logic
from functions.responder.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parent.parent / "events"
REGION = "us-east-1"
ACCOUNT = "111122223333"  # the fixtures' account (moto keeps IAM per its own default)
DISABLE_ARN = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/DisableAccessKeys"
REVOKE_ARN = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/RevokeSessions"
NOW = datetime(2025, 11, 24, 15, 12, 0, tzinfo=UTC)
CUTOFF = "2025-11-24T15:12:00Z"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass
class World:
    """moto IAM with the fixtures' users and roles, a report topic read through SQS, and a
    Stubber answering (and recording) BatchUpdateFindings."""

    iam: Any
    topic_arn: str
    queue_url: str
    stubber: Stubber
    updates: list[dict[str, Any]] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)  # user -> key ids (moto's)

    def config(self, **changes: Any) -> logic.Config:
        base = logic.Config(
            action_arns={DISABLE_ARN: logic.DISABLE_ACCESS_KEYS, REVOKE_ARN: logic.REVOKE_SESSIONS},
            notify_topic_arn=self.topic_arn,
        )
        return dataclasses.replace(base, **changes)

    def expect_updates(self, count: int, **answer: Any) -> None:
        for _ in range(count):
            self.stubber.add_response(
                "batch_update_findings",
                {"ProcessedFindings": [], "UnprocessedFindings": [], **answer},
                {"FindingIdentifiers": ANY, "Note": ANY, "Workflow": ANY},
            )

    def expect_update_without_workflow(self) -> None:
        self.stubber.add_response(
            "batch_update_findings",
            {"ProcessedFindings": [], "UnprocessedFindings": []},
            {"FindingIdentifiers": ANY, "Note": ANY},
        )

    def status(self, user: str) -> dict[str, str]:
        metadata = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in metadata}

    def cutoff(self, role: str) -> str | None:
        try:
            document = self.iam.get_role_policy(RoleName=role, PolicyName=sessions.POLICY_NAME)[
                "PolicyDocument"
            ]
        except self.iam.exceptions.NoSuchEntityException:
            return None
        (statement,) = document["Statement"]
        assert statement["Effect"] == "Deny" and statement["Action"] == ["*"]
        return str(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"])

    def reports(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages.get("Messages", [])]

    def disable_event(self) -> dict[str, Any]:
        """The Disable Access Keys fixture, pointed at moto's key of ci-deployer."""
        event = load("securityhub_action_disable_access_keys.json")
        resource = event["detail"]["findings"][0]["Resources"][0]
        resource["Id"] = f"AWS::IAM::AccessKey:{self.keys['ci-deployer'][0]}"
        return event


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        aws.reset()
        iam = boto3.client("iam", region_name=REGION)
        keys = {}
        for user in ("ci-deployer", "legacy-reporting", "bystander"):
            iam.create_user(UserName=user)
            keys[user] = [
                iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(2)
            ]
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        for role in ("web-instance-role", "partner-audit"):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="playbook-high")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        securityhub = aws.client("securityhub")
        with Stubber(securityhub) as stubber:
            yield World(iam, topic, queue, stubber, keys=keys)
    aws.reset()


def run(world: World, event: dict[str, Any], **config: Any) -> dict[str, Any]:
    return logic.handle(event, world.config(**config), now=lambda: NOW)


# --------------------------------------------------------------------------- Disable Access Keys


def test_disable_access_keys_deactivates_the_named_key_and_every_key_of_a_named_user(
    world: World,
) -> None:
    world.expect_updates(2)
    result = run(world, world.disable_event())

    named, other = world.keys["ci-deployer"]
    assert world.status("ci-deployer") == {named: "Inactive", other: "Active"}
    assert set(world.status("legacy-reporting").values()) == {"Inactive"}
    assert set(world.status("bystander").values()) == {"Active"}
    # Deactivated, never deleted: every key is still there.
    assert len(world.status("legacy-reporting")) == 2
    assert [f["status"] for f in result["findings"]] == ["done", "done"]
    assert result["findings"][0]["actions"] == [
        f"deactivated access key {named} of user ci-deployer (not deleted)"
    ]
    assert len(result["findings"][1]["actions"]) == 2
    world.stubber.assert_no_pending_responses()


def test_a_second_click_changes_nothing_and_says_so(world: World) -> None:
    world.expect_updates(4)
    run(world, world.disable_event())
    before = {u: world.status(u) for u in world.keys}

    again = run(world, world.disable_event())

    assert {u: world.status(u) for u in world.keys} == before
    assert [f["status"] for f in again["findings"]] == ["unchanged", "unchanged"]
    assert again["findings"][0]["actions"][0].endswith("was already inactive")
    assert again["findings"][1]["actions"] == ["user legacy-reporting has no active access key"]


def test_a_key_named_without_its_user_is_found_through_iam(world: World) -> None:
    event = world.disable_event()
    del event["detail"]["findings"][0]["Resources"][0]["Details"]
    event["detail"]["findings"] = event["detail"]["findings"][:1]
    world.expect_updates(1)

    result = run(world, event)

    assert result["findings"][0]["status"] == "done"
    assert world.status("ci-deployer")[world.keys["ci-deployer"][0]] == "Inactive"


def test_a_temporary_key_revokes_the_role_sessions_instead_with_the_reason(world: World) -> None:
    event = load("securityhub_action_disable_access_keys.json")
    revoke = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"] = revoke["detail"]["findings"][:1]  # the ASIA key finding
    world.expect_updates(1)

    result = run(world, event)

    (finding,) = result["findings"]
    assert finding["status"] == "done"
    assert finding["actions"] == [
        "temporary key ASIA3EXAMPLESESSN5R8 cannot be deactivated (STS credentials last until "
        "they expire): revoked the sessions of role web-instance-role issued before "
        f"{CUTOFF} (inline policy AWSRevokeOlderSessions)"
    ]
    assert world.cutoff("web-instance-role") == CUTOFF


def test_a_key_of_another_account_or_unknown_is_rejected_clearly(world: World) -> None:
    event = world.disable_event()
    event["detail"]["findings"] = event["detail"]["findings"][:1]
    resource = event["detail"]["findings"][0]["Resources"][0]
    resource["Id"] = "AWS::IAM::AccessKey:AKIA3EXAMPLEKEY7Q2XZ"  # not in this account
    del resource["Details"]
    world.expect_update_without_workflow()

    result = run(world, event)

    (finding,) = result["findings"]
    assert finding["status"] == "rejected"
    assert "AKIA3EXAMPLEKEY7Q2XZ is not a key of this account" in finding["reason"]


def test_a_root_key_is_refused_with_what_to_do(world: World) -> None:
    event = world.disable_event()
    event["detail"]["findings"] = event["detail"]["findings"][:1]
    details = event["detail"]["findings"][0]["Resources"][0]["Details"]["AwsIamAccessKey"]
    details.update(PrincipalType="Root", PrincipalName="Root")
    world.expect_update_without_workflow()

    (finding,) = run(world, event)["findings"]

    assert finding["status"] == "rejected"
    assert finding["reason"].endswith("is the root user's: deactivate it as the root user")
    assert set(world.status("ci-deployer").values()) == {"Active"}


# --------------------------------------------------------------------------- Revoke Sessions


def test_revoke_sessions_denies_older_sessions_of_each_named_role(world: World) -> None:
    world.expect_updates(2)
    result = run(world, load("securityhub_action_revoke_sessions.json"))

    assert world.cutoff("web-instance-role") == CUTOFF
    assert world.cutoff("partner-audit") == CUTOFF
    assert [f["status"] for f in result["findings"]] == ["done", "done"]
    assert "revoked the sessions of role partner-audit" in result["findings"][1]["actions"][0]


def test_revoke_sessions_is_idempotent_and_a_later_click_moves_the_cutoff(world: World) -> None:
    world.expect_updates(6)
    event = load("securityhub_action_revoke_sessions.json")
    run(world, event)

    again = run(world, event)
    assert [f["status"] for f in again["findings"]] == ["unchanged", "unchanged"]
    assert "were already revoked" in again["findings"][0]["actions"][0]

    later = logic.handle(event, world.config(), now=lambda: NOW + timedelta(hours=1))
    assert [f["status"] for f in later["findings"]] == ["done", "done"]
    assert world.cutoff("web-instance-role") == "2025-11-24T16:12:00Z"
    assert len(world.iam.list_role_policies(RoleName="web-instance-role")["PolicyNames"]) == 1


# --------------------------------------------------------------------------- every action


def test_dry_run_changes_nothing_and_says_what_it_would_do(world: World) -> None:
    disable = run(world, world.disable_event(), dry_run=True)
    revoke = run(world, load("securityhub_action_revoke_sessions.json"), dry_run=True)

    assert set(world.status("ci-deployer").values()) == {"Active"}
    assert set(world.status("legacy-reporting").values()) == {"Active"}
    assert world.cutoff("web-instance-role") is None
    assert disable["dryRun"] is True
    assert disable["findings"][0]["actions"][0].startswith("dry run: would deactivate")
    assert revoke["findings"][1]["actions"][0].startswith(
        "dry run: would revoke the sessions of role partner-audit"
    )
    # No BatchUpdateFindings either: the Stubber has no response queued and would raise.
    reports = world.reports()
    assert [r["detail"]["title"] for r in reports] == [
        "Disable Access Keys (dry run): 2 of 2 findings acted on",
        "Revoke Sessions (dry run): 2 of 2 findings acted on",
    ]


@pytest.mark.parametrize(
    ("fixture", "index", "reason"),
    [
        (
            "securityhub_action_revoke_sessions.json",
            1,
            "role partner-audit has no access keys: use Revoke Sessions for a role",
        ),
        (
            "securityhub_findings_custom_action.json",
            0,
            "the finding names no IAM access key, user or role",
        ),
    ],
)
def test_disable_access_keys_rejects_findings_it_does_not_apply_to(
    world: World, fixture: str, index: int, reason: str
) -> None:
    event = world.disable_event()
    event["detail"]["findings"] = [load(fixture)["detail"]["findings"][index]]
    event["detail"]["findings"][0]["AwsAccountId"] = ACCOUNT
    world.expect_update_without_workflow()

    (finding,) = run(world, event)["findings"]

    assert finding == {
        "findingId": event["detail"]["findings"][0]["Id"],
        "status": "rejected",
        "actions": [],
        "reason": reason,
        "securityHub": "note added",
    }


def test_revoke_sessions_rejects_a_user_finding_and_touches_no_key(world: World) -> None:
    event = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"] = world.disable_event()["detail"]["findings"]
    world.expect_update_without_workflow()
    world.expect_update_without_workflow()

    result = run(world, event)

    assert [f["status"] for f in result["findings"]] == ["rejected", "rejected"]
    assert "use Disable Access Keys for a user's keys" in result["findings"][0]["reason"]
    assert set(world.status("ci-deployer").values()) == {"Active"}


def test_a_finding_of_another_account_is_not_acted_on(world: World) -> None:
    event = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"][0]["AwsAccountId"] = "444455556666"
    world.expect_update_without_workflow()
    world.expect_updates(1)

    result = run(world, event)

    assert result["findings"][0]["status"] == "rejected"
    assert "in account 444455556666" in result["findings"][0]["reason"]
    assert world.cutoff("web-instance-role") is None
    assert world.cutoff("partner-audit") == CUTOFF


@pytest.mark.parametrize("source", ["custom.attacker", "aws.guardduty", None])
def test_a_spoofed_source_is_rejected_and_nothing_changes(world: World, source: Any) -> None:
    event = load("securityhub_action_revoke_sessions.json")
    event["source"] = source

    result = run(world, event)

    assert result["status"] == "rejected"
    assert result["reason"].startswith("spoofed event: event claims detail-type")
    assert world.cutoff("web-instance-role") is None
    assert world.reports() == []


def test_an_action_the_responder_does_not_answer_is_rejected() -> None:
    event = load("securityhub_findings_custom_action.json")  # Send to Slack
    result = logic.handle(event, logic.Config(action_arns={DISABLE_ARN: "x"}))
    assert result == {
        "status": "rejected",
        "reason": "custom action 'arn:aws:securityhub:us-west-2:111122223333:action/custom/"
        "SendToSlack' is not one the responder answers",
    }


@pytest.mark.parametrize(
    "event",
    [None, [], "text", {"detail-type": "Security Hub Findings - Custom Action"}, {"x": 1}],
)
def test_malformed_events_are_rejected_without_raising(event: Any) -> None:
    # Rejected before any AWS call: no moto needed.
    assert logic.handle(event, logic.Config(action_arns={DISABLE_ARN: "x"}))["status"] == "rejected"


def test_the_security_hub_update_has_the_documented_request_shape(world: World) -> None:
    """moto lacks BatchUpdateFindings: the Stubber checks the exact request against the
    botocore service model (shapes, lengths, enum values) and our expected parameters."""
    event = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"] = event["detail"]["findings"][1:]
    finding = event["detail"]["findings"][0]
    world.stubber.add_response(
        "batch_update_findings",
        {
            "ProcessedFindings": [{"Id": finding["Id"], "ProductArn": finding["ProductArn"]}],
            "UnprocessedFindings": [],
        },
        {
            "FindingIdentifiers": [{"Id": finding["Id"], "ProductArn": finding["ProductArn"]}],
            "Note": {
                "Text": "Revoke Sessions: done. revoked the sessions of role partner-audit "
                f"issued before {CUTOFF} (inline policy AWSRevokeOlderSessions)",
                "UpdatedBy": "playbook-responder",
            },
            "Workflow": {"Status": "NOTIFIED"},
        },
    )

    (outcome,) = run(world, event)["findings"]

    assert outcome["securityHub"] == "note added; workflow NOTIFIED"
    world.stubber.assert_no_pending_responses()


def test_a_refused_security_hub_update_is_reported_not_raised(world: World) -> None:
    event = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"] = event["detail"]["findings"][1:]
    world.stubber.add_response(
        "batch_update_findings",
        {
            "ProcessedFindings": [],
            "UnprocessedFindings": [
                {
                    "FindingIdentifier": {"Id": "x", "ProductArn": "y"},
                    "ErrorCode": "FindingNotFound",
                    "ErrorMessage": "Finding not found",
                }
            ],
        },
    )
    world.stubber.add_client_error("batch_update_findings", "InvalidAccessException")

    first = run(world, event)["findings"][0]
    second = run(world, event)["findings"][0]

    assert first["securityHub"] == "not updated: FindingNotFound Finding not found"
    assert second["securityHub"] == "not updated: InvalidAccessException"
    assert world.cutoff("partner-audit") == CUTOFF


def test_long_notes_are_cut_to_what_security_hub_accepts() -> None:
    outcome = logic.Outcome("id", actions=["x" * 600])
    text = logic.note_text(logic.DISABLE_ACCESS_KEYS, outcome, dry_run=False)
    assert len(text) == logic.NOTE_LIMIT and text.endswith("...")


def test_the_report_says_who_asked_and_what_was_done_per_finding(world: World) -> None:
    world.expect_updates(2)
    run(world, world.disable_event())

    (message,) = world.reports()
    assert message["source"] == "playbook.responder"
    assert message["detail-type"] == "Playbook Remediation"
    detail = message["detail"]
    assert detail["title"] == "Disable Access Keys: 2 of 2 findings acted on"
    assert detail["severity"] == "HIGH"
    assert detail["actions"][0] == (
        f"requested by Security Hub custom action Disable Access Keys ({DISABLE_ARN})"
    )
    findings = load("securityhub_action_disable_access_keys.json")["detail"]["findings"]
    assert message["resources"] == [f["Id"] for f in findings]
    assert any("Security Hub note added; workflow NOTIFIED" in a for a in detail["actions"])


# --------------------------------------------------------------------------- automatic responses


def test_guardduty_findings_are_not_answered_unless_automatic_responses_are_on(
    world: World,
) -> None:
    result = run(world, load("gd_responder_instance_credential_exfiltration.json"))
    assert result == {
        "status": "rejected",
        "reason": "automatic responses to GuardDuty findings are off",
    }
    assert world.cutoff("web-instance-role") is None


def test_an_exfiltrated_instance_credential_revokes_the_role_sessions_without_a_click(
    world: World,
) -> None:
    event = load("gd_responder_instance_credential_exfiltration.json")
    world.stubber.add_response(
        "batch_update_findings",
        {"ProcessedFindings": [], "UnprocessedFindings": []},
        {
            "FindingIdentifiers": [
                {
                    "Id": event["detail"]["arn"],
                    "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
                }
            ],
            "Note": ANY,
            "Workflow": {"Status": "NOTIFIED"},
        },
    )

    result = run(
        world,
        event,
        automatic_finding_types=("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration",),
    )

    assert result["requestedBy"] == (
        "automatic response to GuardDuty "
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    )
    assert result["findings"][0]["status"] == "done"
    assert world.cutoff("web-instance-role") == CUTOFF


def test_other_guardduty_types_are_not_answered_automatically(world: World) -> None:
    event = load("gd_responder_instance_credential_exfiltration.json")
    event["detail"]["type"] = "Recon:IAMUser/MaliciousIPCaller"
    result = run(world, event, automatic_finding_types=("UnauthorizedAccess:IAMUser/",))
    assert result["status"] == "rejected"
    assert "is not answered automatically" in result["reason"]


# --------------------------------------------------------------------------- wiring


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "playbook-responder"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:playbook-responder"
    aws_request_id: str = "0c7d2f4e-52b1-4c3a-9d1e-6f8a0b2c4d6e"


def test_the_handler_reads_its_environment_and_calls_only_declared_actions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISABLE_ACCESS_KEYS_ACTION_ARN", DISABLE_ARN)
    monkeypatch.setenv("REVOKE_SESSIONS_ACTION_ARN", REVOKE_ARN)
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", world.topic_arn)
    monkeypatch.setenv("REPORT_EVENT_BUS", "default")
    monkeypatch.setenv("AUTOMATIC_FINDING_TYPES", "[]")
    monkeypatch.setenv("DRY_RUN", "false")
    event = world.disable_event()
    revoke = load("securityhub_action_revoke_sessions.json")
    event["detail"]["findings"][0]["Resources"][0].pop("Details")  # GetAccessKeyLastUsed too
    event["detail"]["findings"].append(revoke["detail"]["findings"][0])  # ASIA -> role policy

    with record_calls() as calls:
        securityhub = aws.client("securityhub")
        with Stubber(securityhub) as stubber:
            for _ in range(3):
                stubber.add_response(
                    "batch_update_findings", {"ProcessedFindings": [], "UnprocessedFindings": []}
                )
            result = handler.lambda_handler(
                copy.deepcopy(event), cast(Any, FakeLambdaContext()), lambda: NOW
            )

    assert [f["status"] for f in result["findings"]] == ["done", "done", "done"]
    assert calls <= permissions.actions(PERMISSIONS), calls - permissions.actions(PERMISSIONS)
    assert {
        "iam:GetAccessKeyLastUsed", "iam:PutRolePolicy", "sns:Publish", "events:PutEvents"
    } <= calls  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRY_RUN": "maybe"}, "DRY_RUN must be true or false"),
        ({"AUTOMATIC_FINDING_TYPES": "{"}, "must be a JSON list"),
        ({"AUTOMATIC_FINDING_TYPES": '[""]'}, "JSON list of finding types"),
    ],
)
def test_a_bad_environment_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(logic.ConfigError, match=message):
        logic.Config.from_env(env)
