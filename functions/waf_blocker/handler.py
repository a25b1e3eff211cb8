"""Lambda entry point: recognise the event, validate it, hand it to :mod:`logic`.

Three event shapes arrive here:

- a GuardDuty finding through EventBridge (``detail-type`` ``GuardDuty Finding``);
- the sweeper's schedule (``detail-type`` ``Scheduled Event``) or ``{"action": "sweep"}``;
- an operator's direct invocation ``{"action": "block"|"unblock", ...}``.

Anything else, or a malformed event, returns a logged rejection instead of raising: a
retry would fail the same way. AWS failures do raise, so Lambda retries the event and
finally hands it to the on-failure destination.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.waf_blocker import logic

logger = Logger(service=logic.FUNCTION_NAME)

_MAX_REASON_ERRORS = 5


def _rejection(reason: str) -> dict[str, Any]:
    logger.warning("event rejected", extra={"reason": reason})
    return {"status": "rejected", "reason": reason}


def _describe(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'event'}: {item['msg']}"
        for item in error.errors()[:_MAX_REASON_ERRORS]
    ]
    return "; ".join(problems)


def _invocation_location(context: LambdaContext) -> tuple[str, str]:
    """Account and region of a direct invocation, from the invoked function's ARN."""
    parts = str(getattr(context, "invoked_function_arn", "")).split(":")
    if len(parts) >= 5 and parts[0] == "arn":
        return parts[4], parts[3]
    return "", os.environ.get("AWS_REGION", "")


@logger.inject_lambda_context(log_event=False)
def lambda_handler(
    event: Any, context: LambdaContext, clock: logic.Clock = logic.SYSTEM_CLOCK
) -> dict[str, Any]:
    config = logic.Config.from_env(os.environ)
    if not isinstance(event, dict):
        return _rejection(f"expected a JSON object, got {type(event).__name__}")
    if "action" in event:
        try:
            request = parse(event, model=logic.DirectRequest).root
        except ValidationError as exc:
            return _rejection(f"invalid request: {_describe(exc)}")
        account, region = _invocation_location(context)
        if isinstance(request, logic.BlockRequest):
            return logic.block(request, config, clock, account=account, region=region)
        if isinstance(request, logic.UnblockRequest):
            return logic.unblock(request, config, clock, account=account, region=region)
        return logic.sweep(config, clock, account=account, region=region)
    detail_type = event.get("detail-type")
    if detail_type == "Scheduled Event":
        try:
            schedule = parse(event, model=EventBridgeModel)
        except ValidationError as exc:
            return _rejection(f"invalid scheduled event: {_describe(exc)}")
        return logic.sweep(config, clock, account=schedule.account, region=schedule.region)
    if detail_type == "GuardDuty Finding":
        try:
            finding = parse(event, model=logic.GuardDutyFindingEvent)
        except ValidationError as exc:
            return _rejection(f"invalid GuardDuty finding event: {_describe(exc)}")
        return logic.handle_finding(finding, config, clock, lambda_context=context)
    return _rejection(f"unrecognised event (detail-type {str(detail_type)[:80]!r})")
