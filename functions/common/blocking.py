"""What the two blocking remediators (waf_blocker, nacl_blocker) share: their event
contracts, their injected clock and the dispatch their handlers do. The same GuardDuty
finding, block or sweep request means the same thing to both."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr

from functions.common import aws

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 365 * 24 * 3600
MAX_ADDRESSES_PER_REQUEST = 1_000

# GuardDuty rates inbound brute force and port probes Low (1.0-3.9): the catalog, not the
# severity, decides who is an attacker, so every catalog finding is acted on by default.
DEFAULT_SEVERITY_THRESHOLD = 1.0
# GuardDuty publishes a new finding within about five minutes, and then an update of an
# ongoing finding at the detector's finding publishing frequency (six hours unless
# changed). Each update extends the block, so a block must outlive that interval or an
# active attacker is unblocked most of the time. The default is twice the frequency: a
# block survives one late or missed update. See
# https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings_cloudwatch.html.
PUBLISHING_FREQUENCIES = {"FIFTEEN_MINUTES": 900, "ONE_HOUR": 3600, "SIX_HOURS": 21600}
TTL_PER_PUBLISHING_INTERVAL = 2
DEFAULT_BLOCK_TTL_SECONDS = TTL_PER_PUBLISHING_INTERVAL * PUBLISHING_FREQUENCIES["SIX_HOURS"]


@dataclass(frozen=True, slots=True)
class Clock:
    """Time as the remediator sees it; tests and the demo pass their own to move it."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


SYSTEM_CLOCK = Clock()


# --------------------------------------------------------------------------- event contracts


class GuardDutyFinding(BaseModel):
    """The part of a GuardDuty finding this function reads; the rest is ignored."""

    model_config = ConfigDict(populate_by_name=True)

    id: StrictStr = Field(min_length=1, max_length=300)
    type: StrictStr = Field(min_length=1, max_length=300)
    severity: float = Field(ge=0, le=10)
    updated_at: StrictStr = Field(alias="updatedAt", min_length=1, max_length=64)
    arn: StrictStr | None = None
    service: dict[str, Any] = Field(default_factory=dict)
    resource: dict[str, Any] = Field(default_factory=dict)


class GuardDutyFindingEvent(EventBridgeModel):
    detail: GuardDutyFinding


class BlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["block"]
    addresses: list[StrictStr] = Field(min_length=1, max_length=MAX_ADDRESSES_PER_REQUEST)
    ttl_seconds: StrictInt | None = Field(default=None, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)
    reason: StrictStr = Field(min_length=1, max_length=256)


class UnblockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["unblock"]
    addresses: list[StrictStr] = Field(min_length=1, max_length=MAX_ADDRESSES_PER_REQUEST)
    reason: StrictStr = Field(min_length=1, max_length=256)


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["sweep"]


class DirectRequest(
    RootModel[
        Annotated[BlockRequest | UnblockRequest | SweepRequest, Field(discriminator="action")]
    ]
):
    """An operator's (or the schedule's) invocation, told apart by ``action``."""


# --------------------------------------------------------------------------- shared helpers

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0


def backoff(attempt: int) -> float:
    """Full jitter: spreads contending writers instead of retrying them in lockstep."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_severity(guardduty_severity: float) -> str:
    if guardduty_severity >= 7:
        return "HIGH"
    if guardduty_severity >= 4:
        return "MEDIUM"
    return "LOW"


_persistence_guard = threading.Lock()
_persistence_layers: dict[str, tuple[Any, DynamoDBPersistenceLayer]] = {}


def persistence_layer(table: str) -> DynamoDBPersistenceLayer:
    """One layer per table and client, for the life of the container.

    Each new layer registers another User-Agent hook on the (cached) DynamoDB client, so a
    layer per invocation would grow that client's hooks and headers without bound.
    """
    client = aws.client("dynamodb")
    with _persistence_guard:
        cached = _persistence_layers.get(table)
        if cached is None or cached[0] is not client:
            layer = DynamoDBPersistenceLayer(
                table_name=table, key_attr="pk", expiry_attr="expires_at", boto3_client=client
            )
            cached = _persistence_layers[table] = (client, layer)
        return cached[1]


# --------------------------------------------------------------------------- dispatch

_MAX_REASON_ERRORS = 5


def _rejection(logger: Logger, reason: str) -> dict[str, Any]:
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


def dispatch(
    event: Any, context: LambdaContext, clock: Clock, logic: ModuleType, logger: Logger
) -> dict[str, Any]:
    """The body of each blocking remediator's handler: recognise the event, validate it,
    hand it to that remediator's ``logic`` module (block, unblock, sweep, handle_finding)."""
    config = logic.Config.from_env(os.environ)
    if not isinstance(event, dict):
        return _rejection(logger, f"expected a JSON object, got {type(event).__name__}")
    if "action" in event:
        try:
            request = parse(event, model=DirectRequest).root
        except ValidationError as exc:
            return _rejection(logger, f"invalid request: {_describe(exc)}")
        account, region = _invocation_location(context)
        if isinstance(request, BlockRequest):
            return logic.block(request, config, clock, account=account, region=region)
        if isinstance(request, UnblockRequest):
            return logic.unblock(request, config, clock, account=account, region=region)
        return logic.sweep(config, clock, account=account, region=region)
    detail_type = event.get("detail-type")
    if detail_type == "Scheduled Event":
        try:
            schedule = parse(event, model=EventBridgeModel)
        except ValidationError as exc:
            return _rejection(logger, f"invalid scheduled event: {_describe(exc)}")
        return logic.sweep(config, clock, account=schedule.account, region=schedule.region)
    if detail_type == "GuardDuty Finding":
        try:
            finding = parse(event, model=GuardDutyFindingEvent)
        except ValidationError as exc:
            return _rejection(logger, f"invalid GuardDuty finding event: {_describe(exc)}")
        return logic.handle_finding(finding, config, clock, lambda_context=context)
    return _rejection(logger, f"unrecognised event (detail-type {str(detail_type)[:80]!r})")
