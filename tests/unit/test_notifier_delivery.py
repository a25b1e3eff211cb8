"""The notifier's I/O: webhooks on a real local HTTP server, the secret and the e-mail topic
in moto, and the Lambda handler end to end."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from bundle.motoserver import FAKE_CREDENTIALS
from functions.common import aws
from functions.common.permissions import actions
from functions.notifier import handler, logic
from functions.notifier.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls
from tests.helpers_webhooks import DROP, WebhookServer
from tests.helpers_webhooks import webhook_server as serve_webhooks

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parent.parent / "events"
REGION = "us-east-1"
SECRET_NAME = "playbook/notifier/webhooks"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


GUARDDUTY = json.dumps(load("guardduty_ec2_malicious_ip.json"))
GUARDDUTY_TITLE = (
    "EC2 instance i-0a1b2c3d4e5f67890 is communicating outbound with a custom threat list "
    "IP address."
)


def sns_event(message: str, *, subject: str | None = None, topic_arn: str | None = None) -> Any:
    event = load("sns_notification.json")
    event["Records"][0]["Sns"]["Message"] = message
    event["Records"][0]["Sns"]["Subject"] = subject
    if topic_arn:
        event["Records"][0]["Sns"]["TopicArn"] = topic_arn
    return event


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def webhook_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with serve_webhooks() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "WEBHOOK_SECRET_NAME", "EMAIL_TOPIC_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP_LOOPBACK", "1")
    with mock_aws():
        aws.reset()
        logic.reset_webhook_cache()
        yield
    aws.reset()
    logic.reset_webhook_cache()


def put_secret(value: Any, name: str = SECRET_NAME) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=name, SecretString=text)


@dataclass
class Inbox:
    """The e-mail topic, with an SQS queue subscribed in place of the mailboxes."""

    topic_arn: str
    queue_url: str

    def messages(self) -> list[dict[str, Any]]:
        response = boto3.client("sqs", region_name=REGION).receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10
        )
        return [json.loads(m["Body"]) for m in response.get("Messages", [])]


@pytest.fixture
def inbox(aws_env: None) -> Inbox:
    key_id = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["KeyId"]
    sns = boto3.client("sns", region_name=REGION)
    topic_arn = sns.create_topic(
        Name="playbook-alerts-email", Attributes={"KmsMasterKeyId": key_id}
    )["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="email-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return Inbox(topic_arn=topic_arn, queue_url=queue_url)


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "playbook-notifier"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:playbook-notifier"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, webhook_server: WebhookServer, inbox: Inbox
) -> WebhookServer:
    """All three chat channels on the local server, plus the e-mail topic."""
    put_secret(webhook_server.urls("slack", "teams", "chime"))
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", SECRET_NAME)
    monkeypatch.setenv("EMAIL_TOPIC_ARN", inbox.topic_arn)
    return webhook_server


def settings_for(*, email_topic_arn: str = "", secret: str = SECRET_NAME) -> logic.Settings:
    return logic.Settings(
        webhook_secret_name=secret, email_topic_arn=email_topic_arn, allow_http_loopback=True
    )


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ----------------------------------------------------------------- handler end to end


def test_handler_delivers_to_every_channel(
    configured: WebhookServer, inbox: Inbox, lambda_context: FakeLambdaContext
) -> None:
    result = handler.lambda_handler(sns_event(GUARDDUTY), lambda_context)

    (record,) = result["records"]
    assert result["status"] == "processed"
    assert record["status"] == "delivered"
    assert record["kind"] == "guardduty"
    assert record["delivered"] == ["slack", "teams", "chime", "email"]
    assert record["failed"] == {}
    (slack,) = configured.posts("slack")
    assert slack["blocks"][0]["text"]["text"] == GUARDDUTY_TITLE
    (teams,) = configured.posts("teams")
    assert teams["attachments"][0]["content"]["body"][0]["text"] == GUARDDUTY_TITLE
    (chime,) = configured.posts("chime")
    assert chime["Content"].startswith(f"[MEDIUM] GuardDuty: {GUARDDUTY_TITLE}")

    (mail,) = inbox.messages()
    assert mail["MessageId"] == record["emailMessageId"]
    assert mail["Subject"].startswith("[MEDIUM] GuardDuty: EC2 instance i-0a1b2c3d4e5f67890")
    body = mail["Message"]
    assert body.startswith(f"{GUARDDUTY_TITLE}\n")
    for line in (
        "Severity: MEDIUM",
        "Account:  123456789012",
        "Region:   us-east-1",
        "Resource: i-0a1b2c3d4e5f67890",
        "What happened",
        "Remote IP: 198.51.100.23 (Netherlands, Example Hosting)",
        "Open in the AWS console: https://us-east-1.console.aws.amazon.com/guardduty/home"
        "?region=us-east-1#/findings?macros=current&fId=46ba0ac2845071e23ccdeb2ae03bfdea",
    ):
        assert line in body


def test_bad_json_is_delivered_as_plain_text(
    configured: WebhookServer, lambda_context: FakeLambdaContext
) -> None:
    result = handler.lambda_handler(sns_event("{oops, not json", subject=None), lambda_context)

    assert result["records"][0]["status"] == "delivered"
    assert result["records"][0]["kind"] == "text"
    assert configured.posts("slack")[0]["blocks"][0]["text"]["text"] == "{oops, not json"


@pytest.mark.parametrize(
    "event",
    [
        {},
        "not a dict",
        None,
        {"Records": []},
        {"Records": "nope"},
        {"Records": [1]},
        {"Records": [{"EventSource": "aws:sns", "Sns": 5}]},
        load("guardduty_ec2_malicious_ip.json"),
    ],
    ids=["empty", "string", "none", "no-records", "records-str", "record-int", "sns-int", "eb"],
)
def test_non_sns_events_are_rejected_without_raising(
    configured: WebhookServer, lambda_context: FakeLambdaContext, event: Any
) -> None:
    result = handler.lambda_handler(event, lambda_context)

    rejected = [result] if "reason" in result else result["records"]
    assert [r["status"] for r in rejected] == ["rejected"] * len(rejected)
    assert configured.received == []


def test_a_record_without_a_message_is_rejected_clearly(
    configured: WebhookServer, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event("unused")
    del event["Records"][0]["Sns"]["Message"]
    second = copy.deepcopy(event["Records"][0])
    second["Sns"]["Message"] = {"not": "a string"}
    event["Records"].append(second)

    result = handler.lambda_handler(event, lambda_context)

    first, other = result["records"]
    assert first == {
        "status": "rejected",
        "reason": "invalid SNS record: Sns.Message: Field required",
    }
    assert other["status"] == "rejected" and "Sns.Message" in other["reason"]
    assert configured.received == []


def test_messages_from_the_email_topic_are_rejected_to_avoid_a_loop(
    configured: WebhookServer, inbox: Inbox, lambda_context: FakeLambdaContext
) -> None:
    result = handler.lambda_handler(sns_event("hi", topic_arn=inbox.topic_arn), lambda_context)

    assert result["records"][0]["status"] == "rejected"
    assert "loop" in result["records"][0]["reason"]
    assert configured.received == [] and inbox.messages() == []


def test_handler_raises_when_every_channel_fails(
    configured: WebhookServer,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMAIL_TOPIC_ARN", "")
    for channel in ("slack", "teams", "chime"):
        configured.script[f"/{channel}"] = [403]

    with pytest.raises(logic.DeliveryError, match="every configured channel failed"):
        handler.lambda_handler(sns_event(GUARDDUTY), lambda_context)


def test_handler_without_any_channel_skips(
    aws_env: None, lambda_context: FakeLambdaContext
) -> None:
    result = handler.lambda_handler(sns_event(GUARDDUTY), lambda_context)

    assert result["records"][0]["status"] == "skipped"
    assert result["records"][0]["delivered"] == []


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    event=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["Records", "Sns", "Message", "EventSource", "TopicArn"])
                | st.text(max_size=8),
                children,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_handler_never_raises_on_arbitrary_events(aws_env: None, event: Any) -> None:
    result = handler.lambda_handler(event, FakeLambdaContext())

    assert result["status"] in {"rejected", "processed"}


# ----------------------------------------------------------------- delivery semantics


def test_a_500_then_200_is_retried(webhook_server: WebhookServer, aws_env: None) -> None:
    put_secret(webhook_server.urls("slack", "teams"))
    webhook_server.script["/teams"] = [500]
    sleeps = Sleeps()

    result = logic.deliver(logic.parse(GUARDDUTY), settings_for(), sleep=sleeps)

    assert result.delivered == ("slack", "teams") and result.failed == ()
    assert len(webhook_server.posts("teams")) == 2
    assert len(webhook_server.posts("slack")) == 1
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.5


def test_429_waits_for_retry_after(webhook_server: WebhookServer, aws_env: None) -> None:
    put_secret(webhook_server.urls("slack"))
    webhook_server.script["/slack"] = [429]
    sleeps = Sleeps()

    result = logic.deliver(logic.parse(GUARDDUTY), settings_for(), sleep=sleeps)

    assert result.delivered == ("slack",)
    assert len(sleeps) == 1 and 1.5 <= sleeps[0] <= 3


def test_a_dropped_connection_is_retried(webhook_server: WebhookServer, aws_env: None) -> None:
    put_secret(webhook_server.urls("chime"))
    webhook_server.script["/chime"] = [DROP, DROP]
    sleeps = Sleeps()

    result = logic.deliver(logic.parse(GUARDDUTY), settings_for(), sleep=sleeps)

    assert result.delivered == ("chime",)
    assert len(webhook_server.posts("chime")) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "HTTP 400: invalid_payload"), (302, "HTTP 302")]
)
def test_client_errors_and_redirects_are_not_retried(
    webhook_server: WebhookServer, inbox: Inbox, status: int, reason: str
) -> None:
    put_secret(webhook_server.urls("slack"))
    webhook_server.script["/slack"] = [status]

    result = logic.deliver(
        logic.parse(GUARDDUTY), settings_for(email_topic_arn=inbox.topic_arn), sleep=Sleeps()
    )

    assert dict(result.failed)["slack"].startswith(reason)
    assert len(webhook_server.posts("slack")) == 1
    assert result.delivered == ("email",)


def test_a_failing_channel_does_not_stop_the_others(
    webhook_server: WebhookServer, inbox: Inbox
) -> None:
    put_secret(webhook_server.urls("slack", "teams", "chime"))
    webhook_server.script["/chime"] = [500, 502, 503]
    sleeps = Sleeps()

    result = logic.deliver(
        logic.parse(GUARDDUTY), settings_for(email_topic_arn=inbox.topic_arn), sleep=sleeps
    )

    assert result.delivered == ("slack", "teams", "email")
    assert result.failed == (("chime", "HTTP 503: invalid_payload after 3 attempts"),)
    assert len(webhook_server.posts("chime")) == logic.MAX_ATTEMPTS
    assert result.email_message_id is not None and len(inbox.messages()) == 1


def test_all_channels_failing_raises(webhook_server: WebhookServer, aws_env: None) -> None:
    put_secret(webhook_server.urls("slack", "teams", "chime"))
    for channel in ("slack", "teams", "chime"):
        webhook_server.script[f"/{channel}"] = [500, 500, 500]

    with pytest.raises(logic.DeliveryError) as raised:
        logic.deliver(logic.parse(GUARDDUTY), settings_for(), sleep=Sleeps())

    message = str(raised.value)
    assert message.startswith("every configured channel failed: slack: HTTP 500")
    assert "teams: HTTP 500" in message and "chime: HTTP 500" in message


def test_no_secret_name_means_no_chat(webhook_server: WebhookServer, inbox: Inbox) -> None:
    result = logic.deliver(
        logic.parse(GUARDDUTY), settings_for(secret="", email_topic_arn=inbox.topic_arn)
    )

    assert result.delivered == ("email",) and result.failed == ()
    assert webhook_server.received == []


def test_a_missing_secret_is_a_clear_error(inbox: Inbox) -> None:
    with pytest.raises(logic.DeliveryError, match=f"webhook secret '{SECRET_NAME}' does not exist"):
        logic.deliver(logic.parse(GUARDDUTY), settings_for())

    result = logic.deliver(logic.parse(GUARDDUTY), settings_for(email_topic_arn=inbox.topic_arn))

    assert result.delivered == ("email",)
    assert result.failed == (
        ("webhooks", f"webhook secret '{SECRET_NAME}' does not exist in Secrets Manager"),
    )


@pytest.mark.parametrize("secret", ["not json", '["https://hooks.slack.com/x"]'])
def test_a_malformed_secret_is_a_clear_error(aws_env: None, secret: str) -> None:
    put_secret(secret)

    with pytest.raises(logic.DeliveryError, match="must be a JSON object"):
        logic.deliver(logic.parse("x"), settings_for())


def test_a_secret_without_channels_delivers_nothing_and_does_not_fail(aws_env: None) -> None:
    put_secret({"slack": ""})

    result = logic.deliver(logic.parse("x"), settings_for())

    assert (result.delivered, result.failed) == ((), ())


def test_http_urls_need_the_loopback_flag(webhook_server: WebhookServer, aws_env: None) -> None:
    put_secret({**webhook_server.urls("slack"), "teams": "http://hooks.example.com/x"})
    strict = logic.Settings(
        webhook_secret_name=SECRET_NAME, email_topic_arn="", allow_http_loopback=False
    )

    with pytest.raises(logic.DeliveryError) as raised:
        logic.deliver(logic.parse("x"), strict)
    assert "slack: slack webhook must be an https:// URL" in str(raised.value)

    result = logic.deliver(logic.parse("x"), settings_for())
    assert result.delivered == ("slack",)
    assert result.failed == (("teams", "teams webhook must be an https:// URL"),)
    assert len(webhook_server.received) == 1


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:8080/hook", True),
        ("http://hooks.slack.com/services/T0/B0/XYZ", False),
        ("ftp://127.0.0.1/hook", False),
        ("https://", False),
        ("http://[::1", False),
        (42, False),
    ],
)
def test_webhook_url_check(url: Any, allowed: bool) -> None:
    if allowed:
        assert logic.check_webhook_url("slack", url, allow_http_loopback=True) == url
    else:
        with pytest.raises(ValueError, match="slack webhook must be an https:// URL"):
            logic.check_webhook_url("slack", url, allow_http_loopback=True)


def test_loopback_http_is_refused_without_the_flag() -> None:
    with pytest.raises(ValueError, match="must be an https:// URL"):
        logic.check_webhook_url("slack", "http://127.0.0.1/x", allow_http_loopback=False)


def test_unknown_secret_keys_are_logged_and_ignored(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    put_secret({"slack": "https://hooks.slack.com/x", "discord": "https://discord.example/x"})

    assert logic.load_webhooks(SECRET_NAME) == {"slack": "https://hooks.slack.com/x"}
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage() == "ignoring unknown key in webhook secret"
    assert warning.__dict__["key"] == "discord"
    assert "https://discord.example/x" not in caplog.text


def test_webhook_secret_is_cached_for_a_short_time(aws_env: None) -> None:
    put_secret({"slack": "https://hooks.slack.com/old"})
    logic.load_webhooks(SECRET_NAME, now=lambda: 1000.0)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=SECRET_NAME, SecretString=json.dumps({"slack": "https://hooks.slack.com/new"})
    )

    cached = logic.load_webhooks(SECRET_NAME, now=lambda: 1000.0 + 299)
    fresh = logic.load_webhooks(SECRET_NAME, now=lambda: 1000.0 + 301)

    assert cached == {"slack": "https://hooks.slack.com/old"}
    assert fresh == {"slack": "https://hooks.slack.com/new"}


# ----------------------------------------------------------------- declared permissions


def test_every_aws_call_is_a_declared_permission(
    configured: WebhookServer,
    inbox: Inbox,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with record_calls() as calls:
        handler.lambda_handler(sns_event(GUARDDUTY), lambda_context)
        logic.reset_webhook_cache()
        monkeypatch.setenv("WEBHOOK_SECRET_NAME", "absent-secret")
        handler.lambda_handler(sns_event("plain text"), lambda_context)
        handler.lambda_handler({"Records": [{"Sns": {}}]}, lambda_context)

    assert calls == {"secretsmanager:GetSecretValue", "sns:Publish"}
    assert calls <= actions(PERMISSIONS)
    # KMS is declared for SNS's side of publishing to an encrypted topic, never called here.
    assert actions(PERMISSIONS) - calls == {"kms:GenerateDataKey", "kms:Decrypt"}
