"""What the two blocking remediators (waf_blocker, nacl_blocker) share: their event
contracts, their injected clock and the dispatch their handlers do. The same GuardDuty
finding, block or sweep request means the same thing to both."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import ModuleType
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr

from functions.common import addresses, aws, events
from functions.common.aws import (  # noqa: F401  (re-exported: the blockers use blocking.X)
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    backoff,
)
from functions.common.intake import (
    CustomActionEvent,
    Finding,
    guardduty_finding,
    guardduty_subnets,
    security_hub_findings,
)

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
    """Time as the remediator sees it; tests and the demo pass their own to move it.

    ``deadline`` (epoch seconds) is when retries must have stopped: the invocation's
    timeout less a margin for the work after them (see :class:`Attempts`).
    """

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    deadline: float = math.inf


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

# Time kept back from the invocation's timeout for what follows the retries (state
# rows, the report, the result).
DEADLINE_MARGIN_SECONDS = 10.0


class Attempts:
    """Bounded retries that also fit in the time left.

    ``limit`` attempts at most, and another only if it can finish before the clock's
    deadline: the longest attempt so far plus the backoff must fit. An attempt is several
    API calls, each with botocore's own retries, so a fixed count alone can outlast the
    Lambda timeout; stopping in time lets the caller raise a clear error so Lambda retries
    the event, instead of being killed half-way.
    """

    def __init__(self, clock: Clock, limit: int, cap: float = BACKOFF_CAP_SECONDS) -> None:
        self.clock = clock
        self.limit = limit
        self.cap = cap
        self.made = 0
        self.out_of_time = False
        self._longest = 0.0
        self._started = 0.0

    def __iter__(self) -> Iterator[int]:
        for attempt in range(self.limit):
            self.made = attempt + 1
            self._started = self.clock.now()
            yield attempt

    def wait(self, attempt: int) -> bool:
        """Back off before the next attempt; ``False`` when there is none to make."""
        now = self.clock.now()
        self._longest = max(self._longest, now - self._started)
        if attempt + 1 >= self.limit:
            return False
        delay = backoff(attempt, self.cap)
        if now + delay + self._longest > self.clock.deadline:
            self.out_of_time = True
            return False
        self.clock.sleep(delay)
        return True

    def summary(self) -> str:
        stopped = (
            " (stopped: the next attempt would not finish in time)" if self.out_of_time else ""
        )
        return f"after {self.made} attempts{stopped}"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lift_reason(cidr: str, allowlist: Sequence[addresses.IPNetwork]) -> str | None:
    """Why a recorded block must be lifted now, or None: the allowlist (or the address
    rules) changed since it was written, and no block may outlive that."""
    try:
        host = addresses.parse_host(cidr)
    except ValueError as exc:
        return f"the recorded address is not one this remediator writes ({exc})"
    decision = addresses.classify(host, allowlist)
    return None if decision.allowed else decision.reason


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


IDEMPOTENCY_KEY_PREFIX = "finding"
# EventBridge retries delivery for up to 24 hours; a redelivery inside that window must be
# recognised as one.
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600


def once(
    process: Callable[..., dict[str, Any]],
    *,
    delivery: dict[str, str],
    table: str,
    lambda_context: LambdaContext | None,
    **arguments: Any,
) -> dict[str, Any]:
    """Run ``process`` once per ``delivery`` (Powertools idempotency over the state table).

    The same delivery twice (EventBridge is at-least-once) returns the stored result
    without touching AWS; Powertools also handles an in-flight duplicate (raises, so
    Lambda retries it later) and deletes the record when processing fails (so the retry
    really retries).
    """
    idempotency = IdempotencyConfig(
        expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS, lambda_context=lambda_context
    )
    wrapped = idempotent_function(
        process,
        data_keyword_argument="delivery",
        persistence_store=persistence_layer(table),
        config=idempotency,
        key_prefix=IDEMPOTENCY_KEY_PREFIX,
    )
    result: dict[str, Any] = wrapped(delivery=delivery, **arguments)
    return result


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a batch of findings came from: for the report and the result."""

    account: str
    region: str
    # "GuardDuty <type>" or "Security Hub action <name>": the rows' reason.
    reason: str
    # What the result names the request by (finding id and type, or the action's findings).
    ids: dict[str, Any]


# Applies findings to one enforcement point: (findings, origin, config, clock) -> result.
Apply = Callable[[Sequence[Finding], Origin, Any, Clock], dict[str, Any]]


def _apply_once(
    *,
    delivery: dict[str, str],
    apply: Apply,
    findings: Sequence[Finding],
    origin: Origin,
    config: Any,
    clock: Clock,
) -> dict[str, Any]:
    return apply(findings, origin, config, clock)


def decide_guardduty(detail: GuardDutyFinding, severity_threshold: float) -> Finding:
    """A GuardDuty finding's candidates and decision (catalog, threshold), with the subnets
    of its instance (the NACL point's targets when NACL_IDS is empty)."""
    return guardduty_finding(
        finding_id=detail.id,
        finding_type=detail.type,
        severity=detail.severity,
        arn=detail.arn,
        service=detail.service,
        subnets=guardduty_subnets(detail.resource),
        severity_threshold=severity_threshold,
    )


def handle_guardduty(
    event: GuardDutyFindingEvent,
    config: Any,
    clock: Clock,
    *,
    apply: Apply,
    logger: Logger,
    lambda_context: LambdaContext | None,
    refuse: Callable[[Finding], str | None] = lambda _: None,
) -> dict[str, Any]:
    """A GuardDuty finding: decide it (catalog, threshold), then apply it once per delivery.

    Idempotency is keyed on the finding id *and* its ``updatedAt``: a genuine update of the
    finding (GuardDuty re-publishes it when the activity recurs) is new evidence and
    extends the block.
    """
    detail = event.detail
    ids = {"findingId": detail.id, "findingType": detail.type}
    finding = decide_guardduty(detail, config.severity_threshold)
    if finding.ignored is not None:
        logger.info("finding ignored", extra={**ids, "reason": finding.ignored})
        return {"status": "ignored", **ids, "reason": finding.ignored}
    refusal = refuse(finding)
    if refusal is not None:
        logger.warning("finding rejected", extra={**ids, "reason": refusal})
        return {"status": "rejected", **ids, "reason": refusal}
    origin = Origin(event.account, event.region, f"GuardDuty {detail.type}", ids)
    return once(
        _apply_once,
        delivery={"findingId": detail.id, "updatedAt": detail.updated_at},
        table=config.state_table,
        lambda_context=lambda_context,
        apply=apply,
        findings=[finding],
        origin=origin,
        config=config,
        clock=clock,
    )


def handle_block_ip(
    event: CustomActionEvent,
    config: Any,
    clock: Clock,
    *,
    apply: Apply,
    lambda_context: LambdaContext | None,
) -> dict[str, Any]:
    """A Security Hub Block IP action: every finding in it, once per event."""
    findings = security_hub_findings(event, config.severity_threshold)
    ids = {
        "action": "blockIp",
        "findings": [
            {"id": f.id, "type": f.type, **({"ignored": f.ignored} if f.ignored else {})}
            for f in findings
        ],
    }
    origin = Origin(
        event.account, event.region, f"Security Hub action {event.detail.action_name}", ids
    )
    return once(
        _apply_once,
        delivery={"securityHubEvent": event.id},
        table=config.state_table,
        lambda_context=lambda_context,
        apply=apply,
        findings=[f for f in findings if f.ignored is None],
        origin=origin,
        config=config,
        clock=clock,
    )


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
    hand it to that remediator's ``logic`` module. The events:

    - a GuardDuty finding through EventBridge (``detail-type`` ``GuardDuty Finding``);
    - the Security Hub "Block IP" custom action (``Security Hub Findings - Custom Action``
      naming ``BLOCK_IP_ACTION_ARN``; see :mod:`functions.common.intake`);
    - a batch of those from the blocker's SQS queue (``Records``);
    - the sweeper's schedule (``detail-type`` ``Scheduled Event``) or ``{"action": "sweep"}``;
    - an operator's direct invocation ``{"action": "block"|"unblock", ...}``.

    An event whose ``source`` is not the service its ``detail-type`` claims, anything else,
    or a malformed event, returns a logged rejection instead of raising: a retry would fail
    the same way. AWS failures do raise, so Lambda retries the event and finally hands it
    to the on-failure destination.
    """
    config = logic.Config.from_env(os.environ)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        clock = replace(clock, deadline=clock.now() + remaining() / 1000 - DEADLINE_MARGIN_SECONDS)
    if not isinstance(event, dict):
        return _rejection(logger, f"expected a JSON object, got {type(event).__name__}")
    if "Records" in event:  # a batch from the blocker's SQS queue (functions/common/queue.py)
        from functions.common.queue import handle_batch  # queue imports this module

        return handle_batch(event, config, clock, logic, logger, context)
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
    mismatch = events.source_mismatch(event)
    if mismatch is not None:
        return _rejection(logger, mismatch)
    detail_type = event.get("detail-type")
    if detail_type == events.SECURITY_HUB_IMPORTED:
        reason = (
            "Security Hub imported findings are not acted on: the GuardDuty findings among "
            "them reach this function directly"
        )
        logger.info("event ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    if detail_type == events.SECURITY_HUB_CUSTOM_ACTION:
        resources = event.get("resources")
        action_arn = config.block_ip_action_arn
        if not action_arn or not isinstance(resources, list) or action_arn not in resources:
            return _rejection(
                logger,
                f"custom action {str(resources)[:200]} is not the configured Block IP action "
                f"({action_arn or 'BLOCK_IP_ACTION_ARN is not set'})",
            )
        try:
            action = parse(event, model=CustomActionEvent)
        except ValidationError as exc:
            return _rejection(logger, f"invalid Security Hub custom action: {_describe(exc)}")
        return handle_block_ip(action, config, clock, apply=logic.apply, lambda_context=context)
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
