"""Apply the generated notifications module into a moto server with the real Terraform
CLI and AWS provider (through pytest-terraform), push a real-shaped GuardDuty finding
through the applied topic and the notifier, then destroy and check nothing is left.

What moto cannot do, and how this test handles it:
- EventBridge in moto delivers to SQS, logs and event buses but not to SNS targets, so
  the finding is published to the high topic exactly as the rule target would, and the
  rules' patterns are checked with EventBridge TestEventPattern against moto's matcher.
- Lambda invoke needs Docker, which this machine lacks, and moto does not deliver SNS
  messages to Lambda subscriptions; the notifier handler runs in-process, configured from
  the applied function's own environment, with boto3 pointed at the same server.
- moto rejects unknown layer ARNs, so the root configuration publishes a stand-in layer.
- moto POSTs to https subscribers itself on publish; the root configuration has none, so
  nothing leaves the machine (the synth and validate layers cover https subscriptions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_terraform import terraform

from bundle.motoserver import InProcessContext, lambda_sns_record
from tests.terraform.conftest import MotoStack, applied_plan, finding, outputs, probe_rules

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "notifications_apply"
STACK: list[MotoStack] = []


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> None:
    STACK[:] = [moto_stack]


def client(service: str) -> Any:
    return STACK[0].client(service)


# No teardown destroy: test_destroy_leaves_nothing destroys and checks, and the moto server
# (all that was applied) ends with the module; a second destroy would cost a provider run.
terraform("notifications_apply", scope="module", teardown=terraform.TEARDOWN_OFF)


def plan_changes(state: Any) -> dict[str, dict[str, Any]]:
    return {c["address"]: c["change"] for c in applied_plan(state, ROOT_CONFIG)["resource_changes"]}


def plan_references(state: Any, resource: str) -> str:
    """The configuration expressions of ``resource`` in the child module, as text."""
    modules = applied_plan(state, ROOT_CONFIG)["configuration"]["root_module"]["module_calls"]
    for block in modules["notifications"]["module"]["resources"]:
        if block["address"] == resource:
            return json.dumps(block["expressions"])
    raise KeyError(resource)


def finding_event() -> dict[str, Any]:
    return finding("guardduty_ec2_malicious_ip.json")


def test_applied_resources_are_configured(notifications_apply: Any) -> None:
    out = outputs(notifications_apply)
    assert set(out["topic_arns"]) == {"high", "info"}
    sns = client("sns")
    for arn in [*out["topic_arns"].values(), out["email_topic_arn"]]:
        attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        assert attributes["KmsMasterKeyId"] == out["kms_key_arn"]
    policy = json.loads(
        sns.get_topic_attributes(TopicArn=out["topic_arns"]["high"])["Attributes"]["Policy"]
    )
    publishers = [
        s for s in policy["Statement"] if s.get("Principal") == {"Service": "events.amazonaws.com"}
    ]
    assert (
        publishers
        and publishers[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    )

    kms = client("kms")
    assert kms.get_key_rotation_status(KeyId=out["kms_key_arn"])["KeyRotationEnabled"] is True

    function = client("lambda").get_function(FunctionName=out["notifier_function_arn"])
    config = function["Configuration"]
    assert config["Handler"] == "functions.notifier.handler.lambda_handler"
    assert config["TracingConfig"]["Mode"] == "Active"
    # moto's Lambda model drops DeadLetterConfig (and the provider's refresh then empties
    # it in state), so check what the applied plan sent: the DLQ of this module.
    changes = plan_changes(notifications_apply)
    dlq = changes["module.notifications.aws_lambda_function.notifier[0]"]["after_unknown"]
    assert dlq["dead_letter_config"] == [{"target_arn": True}]
    references = plan_references(notifications_apply, "aws_lambda_function.notifier")
    assert "aws_sqs_queue.notifier_dlq[0].arn" in references
    assert config["KMSKeyArn"] == out["kms_key_arn"]
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 3
    assert (
        function["Tags"]["ManagedBy"] == "playbook-as-code" and function["Tags"]["Team"] == "secops"
    )

    logs = client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/pbtest-notifier")
    assert logs["logGroups"][0]["retentionInDays"] == 365

    subscriptions = sns.list_subscriptions_by_topic(TopicArn=out["topic_arns"]["high"])[
        "Subscriptions"
    ]
    assert {s["Protocol"] for s in subscriptions} == {"lambda", "sqs"}
    email = sns.list_subscriptions_by_topic(TopicArn=out["email_topic_arn"])["Subscriptions"]
    assert {(s["Protocol"], s["Endpoint"]) for s in email} >= {("email", "secops@example.com")}


def test_role_policy_grants_only_declared_actions(notifications_apply: Any) -> None:
    from functions.notifier.permissions import PERMISSIONS

    iam = client("iam")
    role = "pbtest-notifier-us-east-1"
    document = iam.get_role_policy(RoleName=role, PolicyName="least-privilege")["PolicyDocument"]
    statements = (
        document["Statement"] if isinstance(document, dict) else json.loads(document)["Statement"]
    )
    granted = {action for s in statements for action in s["Action"]}
    infrastructure = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
    assert granted - infrastructure == {p.action for p in PERMISSIONS}
    assert all(
        "*" not in resource
        for s in statements
        for resource in s["Resource"]
        if ":*" not in resource
    )
    secret = next(s for s in statements if s["Sid"] == "DeclaredWebhookSecret")
    assert secret["Resource"] == [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:pbtest/notifier-webhooks-??????"
    ]


def test_roles_follow_the_landing_zone(notifications_apply: Any) -> None:
    """Named per region (an account-wide name would collide in a second region), on the
    given path and with the given permissions boundary."""
    role = client("iam").get_role(RoleName="pbtest-notifier-us-east-1")["Role"]
    assert role["Path"] == "/security/playbook/"
    assert (
        role["PermissionsBoundary"]["PermissionsBoundaryArn"]
        == outputs(notifications_apply)["boundary_arn"]
    )


def test_failures_raise_alarms_and_undelivered_events_are_kept(notifications_apply: Any) -> None:
    """moto's CloudWatch stores alarms but never runs their actions; the notifier's unit
    tests read the message CloudWatch publishes (test_cloudwatch_alarms_read_as_alarms)."""
    out = outputs(notifications_apply)
    alarms = {
        a["AlarmName"]: a
        for a in client("cloudwatch").describe_alarms(AlarmNamePrefix="pbtest-")["MetricAlarms"]
    }
    assert set(alarms) == {
        "pbtest-notifier-errors",
        "pbtest-notifier-failed-events",
        "pbtest-notifications-undelivered-events",
    }
    for alarm in alarms.values():
        # the notifier's own alarms must reach people even when the notifier is down
        assert set(alarm["AlarmActions"]) == {out["topic_arns"]["high"], out["email_topic_arn"]}
        assert alarm["OKActions"] == alarm["AlarmActions"]
    errors = alarms["pbtest-notifier-errors"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "pbtest-notifier"}]
    events = client("events")
    for rule in ("pbtest-guardduty-high", "pbtest-config-noncompliant"):
        (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert target["RetryPolicy"] == {
            "MaximumEventAgeInSeconds": 86400,
            "MaximumRetryAttempts": 185,
        }
        assert target["DeadLetterConfig"]["Arn"].endswith(":pbtest-notifications-events-dlq")


def test_finding_rules_route_by_severity(notifications_apply: Any) -> None:
    """The applied rules' patterns, run by moto's own matcher (see probe_rules)."""
    out = outputs(notifications_apply)
    targets = client("events").list_targets_by_rule(Rule="pbtest-guardduty-high")["Targets"]
    assert [t["Arn"] for t in targets] == [out["topic_arns"]["high"]]
    routed = probe_rules(STACK[0], ["pbtest-guardduty-high", "pbtest-guardduty-info"])
    try:
        for severity, expected in ((8.0, "high"), (7.0, "high"), (5.0, "info")):
            event = finding_event()
            event["detail"]["severity"] = severity
            assert routed(event) == {f"pbtest-guardduty-{expected}"}, severity
    finally:
        routed.restore()  # type: ignore[attr-defined]


def test_finding_flows_through_topic_and_notifier(
    notifications_apply: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.common import aws
    from functions.notifier import handler

    out = outputs(notifications_apply)
    event = finding_event()
    # What the guardduty-high rule's target does: publish the event to the high topic.
    client("sns").publish(TopicArn=out["topic_arns"]["high"], Message=json.dumps(event))
    sqs = client("sqs")
    received = sqs.receive_message(QueueUrl=out["high_subscriber_url"], WaitTimeSeconds=5)[
        "Messages"
    ]
    envelope = json.loads(received[0]["Body"])
    assert json.loads(envelope["Message"])["id"] == event["id"]

    # Deliver that SNS message to the notifier as Lambda would, configured like the
    # applied function.
    configuration = client("lambda").get_function_configuration(
        FunctionName=out["notifier_function_arn"]
    )
    for name, value in configuration["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP_LOOPBACK", "1")
    aws.reset()
    record = lambda_sns_record(envelope)

    context = InProcessContext.of(configuration["FunctionArn"])
    result = handler.lambda_handler({"Records": [record]}, context)  # type: ignore[arg-type]
    assert result["status"] == "processed", result
    assert result["records"][0]["status"] == "delivered", result

    title = event["detail"]["title"]
    slack = STACK[0].webhooks.posts("slack")
    assert slack and title in json.dumps(slack[0])
    assert STACK[0].webhooks.posts("teams") and STACK[0].webhooks.posts("chime")

    mails = sqs.receive_message(QueueUrl=out["email_subscriber_url"], WaitTimeSeconds=5)["Messages"]
    body = mails[0]["Body"]
    assert title in body
    assert event["account"] in body and event["region"] in body
    assert "console.aws.amazon.com/guardduty" in body


def test_destroy_leaves_nothing(notifications_apply: Any) -> None:
    notifications_apply.terraform.destroy()
    assert not [t for t in client("sns").list_topics()["Topics"] if ":pbtest-" in t["TopicArn"]]
    assert not client("lambda").list_functions()["Functions"]
    assert not [
        r for r in client("iam").list_roles()["Roles"] if r["RoleName"].startswith("pbtest-")
    ]
    assert not client("events").list_rules(NamePrefix="pbtest-")["Rules"]
    keys = client("kms").list_keys()["Keys"]
    states = {client("kms").describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] for k in keys}
    assert states <= {"PendingDeletion"}
    assert not client("sqs").list_queues().get("QueueUrls")
    assert not client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/pbtest")[
        "logGroups"
    ]
