"""The Security Hub Send actions: post the selected findings to one destination.

The incident_response module's rules for Send to Slack / Send to E-mail / Send to Workflow
invoke the notifier directly (not through the severity topics) with an input transformer
that wraps the custom action event with its routing key::

    {"route": {"channel": "slack", "audience": "#incident-response"},
     "event": <the "Security Hub Findings - Custom Action" event>}

``channel`` is a chat channel of the webhook secret (``slack``, ``teams``, ``chime``),
``email`` (the e-mail topic) or ``workflow`` (the ``workflow`` https endpoint in the
webhook secret, which receives the raw ASFF finding as JSON). Each finding of the event is
sent once, on its own, with who sent it. Security Hub's event does not name the person who
clicked (AWS's documented format carries the action, not the caller), so "who" is the
custom action, its ARN, the account and the event id, which CloudTrail and the Security
Hub console tie to the person.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.common.events import SECURITY_HUB_CUSTOM_ACTION, source_mismatch
from functions.notifier import logic

CHAT_CHANNELS = tuple(logic.PAYLOADS)
CHANNELS = (*CHAT_CHANNELS, "email", "workflow")
WORKFLOW_KEY = "workflow"  # the webhook secret's key for the security workflow endpoint
AUDIENCE_LIMIT = 100


class RouteError(ValueError):
    """The routed event is not one the notifier sends (the message says why)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    channel: str
    audience: str
    event: dict[str, Any]
    findings: tuple[dict[str, Any], ...]
    sent_by: str


def is_routed(event: Any) -> bool:
    return isinstance(event, dict) and "route" in event and "Records" not in event


def parse_route(event: Mapping[str, Any]) -> Route:
    route, inner = event.get("route"), event.get("event")
    if not isinstance(route, dict) or not isinstance(inner, dict):
        raise RouteError("a routed event needs a route object and the event it routes")
    channel, audience = route.get("channel"), route.get("audience", "")
    if channel not in CHANNELS:
        raise RouteError(f"route channel must be one of {', '.join(CHANNELS)}")
    if not isinstance(audience, str):
        raise RouteError("route audience must be a string")
    spoofed = source_mismatch(inner)
    if spoofed:
        raise RouteError(f"spoofed event: {spoofed}")
    if inner.get("detail-type") != SECURITY_HUB_CUSTOM_ACTION:
        raise RouteError(
            "only Security Hub custom actions are routed, not "
            f"{str(inner.get('detail-type'))[:80]!r}"
        )
    detail = inner.get("detail")
    raw = detail.get("findings") if isinstance(detail, dict) else None
    # One message per finding, even when Security Hub lists a finding twice.
    unique: dict[str, dict[str, Any]] = {}
    for finding in raw if isinstance(raw, list) else []:
        if isinstance(finding, dict) and isinstance(finding.get("Id"), str):
            unique.setdefault(finding["Id"], finding)
    if not unique:
        raise RouteError("the custom action event carries no finding")
    resources = inner.get("resources")
    action_arn = resources[0] if isinstance(resources, list) and resources else ""
    action = detail.get("actionName") if isinstance(detail, dict) else ""
    sent_by = (
        f"Security Hub custom action {logic._line(action, 60) or '(unnamed)'} "
        f"({logic._line(action_arn, 200)}) in account {logic._line(inner.get('account'), 20)}, "
        f"event {logic._line(inner.get('id'), 60)}"
    )
    return Route(
        channel=channel,
        audience=logic._line(audience, AUDIENCE_LIMIT),
        event=inner,
        findings=tuple(unique.values()),
        sent_by=sent_by,
    )


def _notification(route: Route, finding: dict[str, Any]) -> logic.Notification:
    single = {**route.event, "detail": {**route.event["detail"], "findings": [finding]}}
    n = logic.parse(json.dumps(single))
    extra = [("Sent by", route.sent_by)]
    if route.audience:
        extra.append(("Audience", route.audience))
    return dataclasses.replace(n, details=logic._details([*extra, *n.details]))


def _workflow_payload(route: Route, finding: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "playbook.notifier",
        "sentBy": route.sent_by,
        "audience": route.audience,
        "actionArn": (route.event.get("resources") or [""])[0],
        "actionName": route.event["detail"].get("actionName"),
        "account": route.event.get("account"),
        "region": route.event.get("region"),
        "eventId": route.event.get("id"),
        "finding": finding,
    }


def send(
    route: Route, settings: logic.Settings, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Send every finding of ``route`` once to its channel; returns finding id -> outcome.

    Raises :class:`logic.DeliveryError` when no finding could be sent (Lambda retries the
    event; nothing was delivered, so nothing is sent twice)."""
    url = ""
    if route.channel in (*CHAT_CHANNELS, WORKFLOW_KEY):
        if not settings.webhook_secret_name:
            raise logic.DeliveryError(f"{route.channel}: WEBHOOK_SECRET_NAME is not set")
        try:
            webhooks = logic.load_webhooks(settings.webhook_secret_name)
        except logic.WebhookConfigError as error:
            raise logic.DeliveryError(str(error)) from error
        if route.channel not in webhooks:
            raise logic.DeliveryError(
                f"the webhook secret has no {route.channel!r} key for this Send action"
            )
        try:
            url = logic.check_webhook_url(
                route.channel,
                webhooks[route.channel],
                allow_http_loopback=settings.allow_http_loopback,
            )
        except ValueError as error:
            raise logic.DeliveryError(str(error)) from error
    elif not settings.email_topic_arn:
        raise logic.DeliveryError("email: EMAIL_TOPIC_ARN is not set")

    outcomes: dict[str, str] = {}
    for finding in route.findings:
        try:
            if route.channel == WORKFLOW_KEY:
                logic.post_json(url, _workflow_payload(route, finding), sleep=sleep)
            elif route.channel == "email":
                logic.publish_email(_notification(route, finding), settings.email_topic_arn)
            else:
                payload = logic.PAYLOADS[route.channel](_notification(route, finding))
                logic.post_json(url, payload, sleep=sleep)
        except logic.WebhookError as error:
            outcomes[finding["Id"]] = f"failed: {error}"
        except (ClientError, BotoCoreError) as error:
            outcomes[finding["Id"]] = f"failed: SNS publish {type(error).__name__}"
        else:
            outcomes[finding["Id"]] = "sent"
    if "sent" not in outcomes.values():
        raise logic.DeliveryError(f"no finding could be sent to {route.channel}: {outcomes}")
    return {
        "status": "partial" if len(set(outcomes.values())) > 1 else "sent",
        "channel": route.channel,
        "audience": route.audience,
        "sentBy": route.sent_by,
        "findings": outcomes,
    }
