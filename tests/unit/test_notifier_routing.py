"""The Security Hub Send actions routed to the notifier: one message per finding to the
channel of the routing key, saying who sent it. Webhooks on a real local HTTP server, the
secret and the e-mail topic in moto (fixtures shared with test_notifier_delivery)."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import pytest

from functions.common import permissions
from functions.notifier import handler, logic, routing
from functions.notifier.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls
from tests.helpers_webhooks import WebhookServer
from tests.unit.test_notifier_delivery import (
    SECRET_NAME,
    FakeLambdaContext,
    Inbox,
    aws_env,
    inbox,
    load,
    put_secret,
    webhook_server,
)

pytestmark = pytest.mark.unit
__all__ = ["aws_env", "inbox", "webhook_server"]  # fixtures, imported for pytest

ACTION = load("securityhub_findings_custom_action.json")  # Send to Slack, two findings
ACTION_ARN = ACTION["resources"][0]
FINDING_IDS = [f["Id"] for f in ACTION["detail"]["findings"]]
SENT_BY = (
    f"Security Hub custom action SendToSlack ({ACTION_ARN}) in account 111122223333, "
    "event 1a1111a1-b22b-3c33-444d-5555e5ee5555"
)


def routed(channel: str, audience: str = "#incident-response", **changes: Any) -> dict[str, Any]:
    """What the module's input transformer makes of the custom action event."""
    event = copy.deepcopy(ACTION)
    event.update(changes)
    return {"route": {"channel": channel, "audience": audience}, "event": event}


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, webhook_server: WebhookServer, inbox: Inbox
) -> WebhookServer:
    put_secret(webhook_server.urls("slack", "teams", "workflow"))
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", SECRET_NAME)
    monkeypatch.setenv("EMAIL_TOPIC_ARN", inbox.topic_arn)
    return webhook_server


def invoke(event: Any) -> dict[str, Any]:
    return handler.lambda_handler(event, cast(Any, FakeLambdaContext()))


def test_send_to_slack_posts_each_finding_once_to_slack_only(configured: WebhookServer) -> None:
    event = routed("slack")
    event["event"]["detail"]["findings"].append(copy.deepcopy(ACTION["detail"]["findings"][0]))

    with record_calls() as calls:
        result = invoke(event)

    assert result["status"] == "sent"
    assert result["findings"] == {finding_id: "sent" for finding_id in FINDING_IDS}
    posts = configured.posts("slack")
    assert len(posts) == 2  # the repeated finding is sent once
    assert configured.posts("teams") == [] and configured.posts("workflow") == []
    texts = [json.dumps(post) for post in posts]
    assert all(SENT_BY in text and "#incident-response" in text for text in texts)
    # Each post carries one finding: its own title, not a "2 Security Hub findings" list.
    assert "querying a domain name" in texts[0] + texts[1]
    assert "Security groups should not allow" in texts[0] + texts[1]
    assert not any("2 Security Hub findings" in text for text in texts)
    assert calls <= permissions.actions(PERMISSIONS)


def test_send_to_teams_uses_the_teams_webhook(configured: WebhookServer) -> None:
    assert invoke(routed("teams"))["status"] == "sent"
    assert len(configured.posts("teams")) == 2 and configured.posts("slack") == []


def test_send_to_email_publishes_one_readable_email_per_finding(
    configured: WebhookServer, inbox: Inbox
) -> None:
    result = invoke(routed("email", audience="security team"))

    assert result["channel"] == "email" and result["status"] == "sent"
    messages = inbox.messages()
    assert len(messages) == 2
    bodies = [m["Message"] for m in messages]
    assert all(f"Sent by: {SENT_BY}" in body for body in bodies)
    assert all("Audience: security team" in body for body in bodies)
    assert configured.posts("slack") == []


def test_send_to_workflow_posts_the_asff_finding_and_who_sent_it(
    configured: WebhookServer,
) -> None:
    result = invoke(routed("workflow", audience="security workflow"))

    assert result["status"] == "sent"
    posts = configured.posts("workflow")
    assert [post["finding"] for post in posts] == ACTION["detail"]["findings"]
    assert {post["sentBy"] for post in posts} == {SENT_BY}
    assert {post["actionArn"] for post in posts} == {ACTION_ARN}
    assert {post["audience"] for post in posts} == {"security workflow"}


def test_one_failing_finding_does_not_stop_the_others(configured: WebhookServer) -> None:
    configured.script["/slack"] = [400]

    result = invoke(routed("slack"))

    assert result["status"] == "partial"
    assert sorted(result["findings"].values()) == ["failed: HTTP 400: invalid_payload", "sent"]


def test_nothing_sent_raises_so_lambda_retries(configured: WebhookServer) -> None:
    configured.script["/slack"] = [400, 400]
    with pytest.raises(logic.DeliveryError, match="no finding could be sent to slack"):
        invoke(routed("slack"))


def test_a_missing_destination_is_a_clear_error(
    webhook_server: WebhookServer, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_secret(webhook_server.urls("slack"))
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", SECRET_NAME)
    with pytest.raises(logic.DeliveryError, match="no 'workflow' key"):
        invoke(routed("workflow"))
    with pytest.raises(logic.DeliveryError, match="EMAIL_TOPIC_ARN is not set"):
        invoke(routed("email"))
    assert webhook_server.received == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (routed("slack", source="custom.attacker"), "spoofed event: event claims detail-type"),
        (routed("pager"), "route channel must be one of slack, teams, chime, email, workflow"),
        (
            routed("slack", **{"detail-type": "Security Hub Findings - Imported"}),
            "only Security Hub custom actions are routed",
        ),
        ({"route": {"channel": "slack"}, "event": "text"}, "a routed event needs a route"),
        (
            routed("slack", detail={"actionName": "SendToSlack", "findings": []}),
            "the custom action event carries no finding",
        ),
    ],
)
def test_routed_events_the_notifier_does_not_send_are_rejected(
    configured: WebhookServer, event: dict[str, Any], reason: str
) -> None:
    result = invoke(event)
    assert result["status"] == "rejected"
    assert result["reason"].startswith(reason)
    assert configured.received == []


def test_the_workflow_key_is_kept_for_routing_but_never_gets_chat_payloads(
    configured: WebhookServer,
) -> None:
    webhooks = logic.load_webhooks(SECRET_NAME)
    assert set(webhooks) == {"slack", "teams", "workflow"}
    notification = logic.parse(json.dumps(ACTION))
    delivery = logic.deliver(notification, logic.Settings.from_env({
        "WEBHOOK_SECRET_NAME": SECRET_NAME, "NOTIFIER_ALLOW_HTTP_LOOPBACK": "1"
    }))  # fmt: skip
    assert set(delivery.delivered) == {"slack", "teams"}
    assert configured.posts("workflow") == []


def test_is_routed_only_for_route_envelopes() -> None:
    assert routing.is_routed({"route": {}, "event": {}})
    assert not routing.is_routed({"Records": [], "route": {}})
    assert not routing.is_routed(ACTION)
