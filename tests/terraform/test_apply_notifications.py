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
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pytest_terraform import terraform

from bundle import terraform as tf
from bundle.motoserver import moto_server, pointed_at
from tests.helpers_webhooks import WebhookServer, webhook_server

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parent.parent / "events"
ROOT_CONFIG = Path(__file__).resolve().parent / "notifications_apply"


class Context:
    endpoint: str
    webhooks: WebhookServer


CONTEXT = Context()


@pytest.fixture(scope="module", autouse=True)
def moto_environment(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A moto server and a webhook receiver for the whole module, and the environment the
    terraform subprocesses and the in-process handler read."""
    layer = tmp_path_factory.mktemp("layer") / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
    with moto_server() as server, webhook_server() as webhooks, pointed_at(server.endpoint):
        CONTEXT.endpoint = server.endpoint
        CONTEXT.webhooks = webhooks
        patch = pytest.MonkeyPatch()
        patch.setenv("TF_CLI_CONFIG_FILE", str(tf.cli_config()))
        patch.setenv("TF_VAR_endpoint", server.endpoint)
        patch.setenv("TF_VAR_layer_zip", str(layer))
        patch.setenv("TF_VAR_webhook_urls", json.dumps(webhooks.urls("slack", "teams", "chime")))
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        try:
            yield
        finally:
            patch.undo()


terraform("notifications_apply", scope="module", teardown=terraform.TEARDOWN_ON)


def outputs(state: Any) -> dict[str, Any]:
    return {name: value["value"] for name, value in state.outputs.items()}


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=CONTEXT.endpoint)


def applied_plan(state: Any) -> dict[str, Any]:
    """``terraform show -json`` of the plan pytest-terraform applied."""
    work_dir = state.terraform.work_dir
    result = tf.run(
        ["show", "-json", f"{work_dir}/tfplan"], ROOT_CONFIG, env={"TF_DATA_DIR": work_dir}
    )
    assert result.ok, result.output
    plan: dict[str, Any] = json.loads(result.output)
    return plan


def plan_changes(state: Any) -> dict[str, dict[str, Any]]:
    return {c["address"]: c["change"] for c in applied_plan(state)["resource_changes"]}


def plan_references(state: Any, resource: str) -> str:
    """The configuration expressions of ``resource`` in the child module, as text."""
    modules = applied_plan(state)["configuration"]["root_module"]["module_calls"]
    for block in modules["notifications"]["module"]["resources"]:
        if block["address"] == resource:
            return json.dumps(block["expressions"])
    raise KeyError(resource)


def finding_event() -> dict[str, Any]:
    return json.loads((EVENTS / "guardduty_ec2_malicious_ip.json").read_text())


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
    role = "pbtest-notifier-role"
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


def test_finding_rules_route_by_severity(notifications_apply: Any) -> None:
    """The applied rules' patterns, run by moto's own matcher. moto has no
    TestEventPattern, and PutEvents fails outright when a matching rule targets SNS, so
    while probing, each GuardDuty rule's topic target is swapped for an SQS queue and
    restored afterwards."""
    events, sqs = client("events"), client("sqs")
    out = outputs(notifications_apply)
    targets = events.list_targets_by_rule(Rule="pbtest-guardduty-high")["Targets"]
    assert [t["Arn"] for t in targets] == [out["topic_arns"]["high"]]
    probes, originals = {}, {}
    for rule in ("guardduty-high", "guardduty-info"):
        originals[rule] = events.list_targets_by_rule(Rule=f"pbtest-{rule}")["Targets"]
        events.remove_targets(Rule=f"pbtest-{rule}", Ids=[t["Id"] for t in originals[rule]])
        url = sqs.create_queue(QueueName=f"probe-{rule}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_targets(Rule=f"pbtest-{rule}", Targets=[{"Id": "probe", "Arn": arn}])
        probes[rule] = url

    def routed(severity: float) -> set[str]:
        event = finding_event()
        event["detail"]["severity"] = severity
        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        hit = set()
        for rule, url in probes.items():
            messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                hit.add(rule)
        return hit

    try:
        assert routed(8.0) == {"guardduty-high"}
        assert routed(7.0) == {"guardduty-high"}
        assert routed(5.0) == {"guardduty-info"}
    finally:
        for rule, url in probes.items():
            events.remove_targets(Rule=f"pbtest-{rule}", Ids=["probe"])
            events.put_targets(Rule=f"pbtest-{rule}", Targets=originals[rule])
            sqs.delete_queue(QueueUrl=url)


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
    record = {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{out['topic_arns']['high']}:subscription",
        "Sns": {
            "Type": envelope["Type"],
            "MessageId": envelope["MessageId"],
            "TopicArn": envelope["TopicArn"],
            "Subject": envelope.get("Subject"),
            "Message": envelope["Message"],
            "Timestamp": envelope["Timestamp"],
            "SignatureVersion": envelope["SignatureVersion"],
            "Signature": envelope["Signature"],
            "SigningCertUrl": envelope["SigningCertURL"],
            "UnsubscribeUrl": envelope["UnsubscribeURL"],
            "MessageAttributes": {},
        },
    }

    class Context:
        function_name = configuration["FunctionName"]
        memory_limit_in_mb = configuration["MemorySize"]
        invoked_function_arn = configuration["FunctionArn"]
        aws_request_id = "apply-test"

    result = handler.lambda_handler({"Records": [record]}, Context())
    assert result["status"] == "processed", result
    assert result["records"][0]["status"] == "delivered", result

    title = event["detail"]["title"]
    slack = CONTEXT.webhooks.posts("slack")
    assert slack and title in json.dumps(slack[0])
    assert CONTEXT.webhooks.posts("teams") and CONTEXT.webhooks.posts("chime")

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
