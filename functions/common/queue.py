"""The SQS intake of the blocking remediators: a batch of EventBridge events, applied to
the enforcement point in one read-modify-write.

EventBridge sends findings and Block IP actions to the blocker's queue; the Lambda event
source mapping hands the function up to ``batch_size`` messages at a time, each body one
EventBridge event. Every record is validated as a direct event is (see
:func:`functions.common.blocking.dispatch`): a malformed or spoofed record, or a custom
action that is not the configured Block IP action, is a logged rejection and its message
is consumed, because a retry would fail the same way.

Idempotency stays per delivery, with the same key as a direct delivery (``once``): each
record claims its delivery in the state table before the batch is applied, a delivery
already completed is skipped, and one in flight elsewhere is left to a later retry. The
decided findings of all claimed records then go to ``logic.apply`` in one call, so a
point is read and written once per batch instead of once per finding. When that call
raises, the claims are released and every record that was not rejected is reported in
``batchItemFailures``; SQS redelivers only those (``ReportBatchItemFailures``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import STATUS_CONSTANTS
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import events
from functions.common.blocking import (
    IDEMPOTENCY_KEY_PREFIX,
    IDEMPOTENCY_WINDOW_SECONDS,
    Clock,
    GuardDutyFindingEvent,
    Origin,
    _describe,
    decide_guardduty,
    persistence_layer,
)
from functions.common.intake import (
    CustomActionEvent,
    Finding,
    security_hub_findings,
)
from functions.common.permissions import Permission

# Rows keep one reason; a batch of many finding types names the first few.
_REASONS_NAMED = 3

# The event source mapping's defaults (the modules' queue_* inputs). A batch of up to 100
# findings a few seconds apart becomes one read-modify-write of each point: a burst of
# 1,000 findings is about ten writes instead of a thousand (docs/benchmarks.md). 100
# GuardDuty events of 5-15 KB each stay well inside Lambda's 6 MB payload, and their rows
# inside the function timeout.
DEFAULT_BATCH_SIZE = 100
DEFAULT_BATCH_WINDOW_SECONDS = 5
# Writes to one point contend (WAF LockToken, one NACL writer), so more pollers add
# conflicts, not throughput; 2 is the least SQS event sources allow.
DEFAULT_MAXIMUM_CONCURRENCY = 2

# What the event source mapping does with the function's role (Lambda polls on the
# function's behalf; the code never calls these, so they are not in the functions'
# permissions.py): the blocking modules add them to the role's generated policy.
QUEUE_PERMISSIONS: tuple[Permission, ...] = (
    Permission("sqs:ReceiveMessage", "intake_queue", "the event source mapping polls the queue"),
    Permission("sqs:DeleteMessage", "intake_queue", "the event source mapping deletes done work"),
    Permission(
        "sqs:GetQueueAttributes", "intake_queue", "the event source mapping reads the queue"
    ),
    Permission(
        "kms:Decrypt", "intake_queue_key", "read messages EventBridge encrypted with the module key"
    ),
)


@dataclass(slots=True)
class _Record:
    """One SQS message of the batch and what became of it."""

    message_id: str
    outcome: str = "pending"  # rejected | ignored | duplicate | in_flight | claimed
    reason: str = ""
    delivery: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    account: str = ""
    region: str = ""
    origin_reason: str = ""
    ids: dict[str, Any] = field(default_factory=dict)

    def settle(self, outcome: str, reason: str) -> _Record:
        self.outcome, self.reason = outcome, reason
        return self


def _decide(record: Any, config: Any) -> _Record:
    """Validate one record as dispatch validates a direct event and decide its findings."""
    message_id = str(record.get("messageId", "")) if isinstance(record, Mapping) else ""
    item = _Record(message_id)
    if not message_id or record.get("eventSource") != "aws:sqs":
        return item.settle("rejected", "not an SQS record (no messageId or eventSource)")
    try:
        event = json.loads(record.get("body") or "")
    except (TypeError, ValueError) as exc:
        return item.settle("rejected", f"body is not JSON: {exc}")
    if not isinstance(event, dict):
        return item.settle("rejected", f"body is not a JSON object ({type(event).__name__})")
    mismatch = events.source_mismatch(event)
    if mismatch is not None:
        return item.settle("rejected", mismatch)
    detail_type = event.get("detail-type")
    if detail_type == events.SECURITY_HUB_IMPORTED:
        return item.settle("ignored", "Security Hub imported findings are not acted on")
    if detail_type == events.SECURITY_HUB_CUSTOM_ACTION:
        return _decide_block_ip(item, event, config)
    if detail_type == events.GUARDDUTY_FINDING:
        return _decide_guardduty(item, event, config)
    return item.settle(
        "rejected", f"not an event of the blocker's queue (detail-type {str(detail_type)[:80]!r})"
    )


def _decide_guardduty(
    item: _Record,
    event: dict[str, Any],
    config: Any,
) -> _Record:
    try:
        parsed = parse(event, model=GuardDutyFindingEvent)
    except ValidationError as exc:
        return item.settle("rejected", f"invalid GuardDuty finding event: {_describe(exc)}")
    detail = parsed.detail
    item.ids = {"findingId": detail.id, "findingType": detail.type}
    finding = decide_guardduty(detail, config.severity_threshold)
    if finding.ignored is not None:
        return item.settle("ignored", finding.ignored)
    item.delivery = {"findingId": detail.id, "updatedAt": detail.updated_at}
    item.findings = [finding]
    item.account, item.region = parsed.account, parsed.region
    item.origin_reason = f"GuardDuty {detail.type}"
    return item


def _decide_block_ip(item: _Record, event: dict[str, Any], config: Any) -> _Record:
    resources = event.get("resources")
    action_arn = config.block_ip_action_arn
    if not action_arn or not isinstance(resources, list) or action_arn not in resources:
        return item.settle(
            "rejected",
            f"custom action {str(resources)[:200]} is not the configured Block IP action "
            f"({action_arn or 'BLOCK_IP_ACTION_ARN is not set'})",
        )
    try:
        action = parse(event, model=CustomActionEvent)
    except ValidationError as exc:
        return item.settle("rejected", f"invalid Security Hub custom action: {_describe(exc)}")
    findings = security_hub_findings(action, config.severity_threshold)
    item.ids = {"action": "blockIp", "findings": [f.id for f in findings]}
    item.findings = [f for f in findings if f.ignored is None]
    if not item.findings:
        return item.settle("ignored", "; ".join(str(f.ignored) for f in findings)[:500])
    item.delivery = {"securityHubEvent": action.id}
    item.account, item.region = action.account, action.region
    item.origin_reason = f"Security Hub action {action.detail.action_name}"
    return item


class _Claims:
    """The per-delivery idempotency records of a batch, kept in the state table with the
    same keys, window and states as :func:`functions.common.blocking.once`."""

    def __init__(self, table: str, context: LambdaContext | None) -> None:
        self.store = persistence_layer(table)
        self.store.configure(
            IdempotencyConfig(
                expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS, lambda_context=context
            ),
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        self.remaining: Callable[[], int | None] = remaining if callable(remaining) else _none

    def claim(self, item: _Record) -> None:
        """Mark ``item`` claimed, or a duplicate (already done) or in flight elsewhere."""
        try:
            self.store.save_inprogress(item.delivery, self.remaining())
        except IdempotencyItemAlreadyExistsError as exc:
            existing = exc.old_data_record or self.store.get_record(item.delivery)
            if existing is not None and existing.status == STATUS_CONSTANTS["COMPLETED"]:
                item.settle("duplicate", "this delivery was already applied")
            else:
                item.settle("in_flight", "this delivery is being applied by another invocation")
            return
        item.settle("claimed", "")

    def complete(self, item: _Record, result: Mapping[str, Any]) -> None:
        self.store.save_success(item.delivery, dict(result))

    def release(self, item: _Record, error: Exception) -> None:
        self.store.delete_record(item.delivery, error)


def _none() -> None:
    return None


def _origin(items: Sequence[_Record]) -> Origin:
    reasons = list(dict.fromkeys(item.origin_reason for item in items))
    named = ", ".join(reasons[:_REASONS_NAMED])
    more = len(reasons) - _REASONS_NAMED
    return Origin(
        items[0].account,
        items[0].region,
        named + (f" and {more} more" if more > 0 else ""),
        {"batch": [{"messageId": item.message_id, **item.ids} for item in items]},
    )


def handle_batch(
    event: Mapping[str, Any],
    config: Any,
    clock: Clock,
    logic: ModuleType,
    logger: Logger,
    context: LambdaContext | None,
) -> dict[str, Any]:
    """An SQS batch: decide every record, claim each delivery, apply all claimed findings
    in one call per account and region, and report the records SQS must redeliver."""
    items = [_decide(record, config) for record in event.get("Records") or []]
    claims = _Claims(config.state_table, context)
    seen: dict[str, _Record] = {}
    for item in items:
        if item.outcome != "pending":
            continue
        key = json.dumps(item.delivery, sort_keys=True)
        if key in seen:  # the same delivery twice in one batch: it rides with the first
            item.settle("duplicate", f"same delivery as message {seen[key].message_id}")
            continue
        seen[key] = item
        try:
            claims.claim(item)
        except Exception as exc:  # the state table failed: retry this record later
            logger.exception("could not claim a delivery", extra={"messageId": item.message_id})
            item.settle("in_flight", f"could not claim the delivery: {exc}")
    failed = {item.message_id for item in items if item.outcome == "in_flight"}
    groups: dict[tuple[str, str], list[_Record]] = {}
    for item in items:
        if item.outcome == "claimed":
            groups.setdefault((item.account, item.region), []).append(item)
    for group in groups.values():
        findings = [finding for item in group for finding in item.findings]
        try:
            result = logic.apply(findings, _origin(group), config, clock)
        except Exception as exc:
            logger.exception("batch apply failed", extra={"records": len(group)})
            for item in group:
                _quietly(logger, claims.release, item, exc)
            failed |= {i.message_id for i in items if i.outcome not in ("rejected", "ignored")}
            continue
        summary = {"status": result.get("status"), "batchRecords": len(group)}
        for item in group:
            if not _quietly(logger, claims.complete, item, summary):
                failed.add(item.message_id)
    for item in items:
        if item.outcome in ("rejected", "ignored", "duplicate"):
            log = logger.warning if item.outcome == "rejected" else logger.info
            extra = {"messageId": item.message_id, "reason": item.reason}
            log(f"record {item.outcome}", extra=extra)
    logger.info(
        "batch processed",
        extra={
            "records": len(items),
            "applied": sum(item.outcome == "claimed" for item in items),
            "failed": len(failed),
        },
    )
    ordered = [item.message_id for item in items if item.message_id in failed]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in dict.fromkeys(ordered)]}


def _quietly(logger: Logger, step: Callable[[_Record, Any], None], item: _Record, arg: Any) -> bool:
    """Run a bookkeeping step; a failure is logged, and the record retried."""
    try:
        step(item, arg)
    except Exception:
        logger.exception("idempotency bookkeeping failed", extra={"messageId": item.message_id})
        return False
    return True


def sqs_batch(bodies: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """EventBridge events as the SQS event source mapping delivers them to the function
    (for the demo, the benchmark and tests, which invoke the handler in-process)."""
    region = queue_arn.split(":")[3]
    records = []
    for index, body in enumerate(bodies):
        text = json.dumps(body, sort_keys=True)
        digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
        message_id = f"{digest[:8]}-{digest[8:12]}-{index:04x}-{digest[16:20]}-{digest[20:]}"
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": f"AQEB{digest}",
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1750000000000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1750000000001",
                },
                "messageAttributes": {},
                "md5OfBody": digest,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}
