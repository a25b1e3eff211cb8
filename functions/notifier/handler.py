"""Lambda entry point: SNS records from the severity topics in, chat and e-mail out; and
the Security Hub Send actions, routed here by the incident_response module
(``{"route": {...}, "event": {...}}``, see :mod:`functions.notifier.routing`).

Handler string: ``functions.notifier.handler.lambda_handler``. Environment:
``WEBHOOK_SECRET_NAME`` (Secrets Manager secret holding the webhook URLs; empty: no chat),
``EMAIL_TOPIC_ARN`` (topic of the e-mail subscriptions; empty: no e-mail),
``NOTIFIER_ALLOW_HTTP_LOOPBACK`` ("1" lets tests use http://127.0.0.1 webhooks).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import SnsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from functions.notifier import logic, routing

logger = Logger(service="notifier")


def _rejected(reason: str) -> dict[str, Any]:
    logger.error("rejected", extra={"reason": reason})
    return {"status": "rejected", "reason": reason}


def _handle_record(record: Any, settings: logic.Settings) -> dict[str, Any]:
    # The parser model's own pre-validator assumes Sns is a mapping; check that first so
    # a malformed record is rejected instead of raising TypeError.
    if not isinstance(record, dict) or not isinstance(record.get("Sns"), dict):
        return _rejected("not an SNS record: no Sns object")
    try:
        sns = SnsRecordModel.model_validate(record).Sns
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()[:5]
        ]
        return _rejected("invalid SNS record: " + "; ".join(problems))
    if settings.email_topic_arn and sns.TopicArn == settings.email_topic_arn:
        return _rejected("message came from the e-mail topic; formatting it again would loop")

    notification = logic.parse(str(sns.Message), subject=sns.Subject)
    logger.info(
        "notification",
        extra={
            "messageId": sns.MessageId,
            "kind": notification.kind.value,
            "severity": notification.severity,
            "title": notification.title,
        },
    )
    try:
        delivery = logic.deliver(notification, settings)
    except logic.DeliveryError:
        logger.exception(
            "every channel failed; raising so Lambda retries", extra={"messageId": sns.MessageId}
        )
        raise
    status = "partial" if delivery.failed else "delivered" if delivery.delivered else "skipped"
    return {
        "status": status,
        "messageId": sns.MessageId,
        "kind": notification.kind.value,
        **delivery.as_dict(),
    }


def _handle_route(event: dict[str, Any], settings: logic.Settings) -> dict[str, Any]:
    try:
        route = routing.parse_route(event)
    except routing.RouteError as error:
        return _rejected(str(error))
    try:
        result = routing.send(route, settings)
    except logic.DeliveryError:
        logger.exception("nothing could be sent; raising so Lambda retries")
        raise
    logger.info("routed", extra={k: result[k] for k in ("status", "channel", "findings")})
    return result


@logger.inject_lambda_context
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if routing.is_routed(event):
        return _handle_route(event, logic.Settings.from_env(os.environ))
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        return {**_rejected("not an SNS event: expected a non-empty Records list"), "records": []}
    settings = logic.Settings.from_env(os.environ)
    return {"status": "processed", "records": [_handle_record(r, settings) for r in records]}
