"""The message every remediator publishes about what it did.

It is shaped like an EventBridge event (``source`` / ``detail-type`` / ``detail``) so the
notifier formats it like any other event, and so a platform team can route it with an
EventBridge rule too. Remediators never format chat or e-mail text themselves.

:func:`publish` sends it two ways: to the notify topic (SNS), and, when the module set
``REPORT_EVENT_BUS`` (every remediator module does: ``default``), onto that EventBridge bus
with ``PutEvents``, where the notifications module's member rule forwards it to the hub
(docs/architecture.md, section 39). A report over the 256 KB both services accept loses
its last actions, with a line saying so.
"""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from functions.common import aws
from functions.common.permissions import Permission

logger = Logger(child=True)

SOURCE_PREFIX = "playbook."
DETAIL_TYPE = "Playbook Remediation"
SEVERITIES = ("HIGH", "MEDIUM", "LOW", "INFO")
SNS_SUBJECT_LIMIT = 99  # SNS wants fewer than 100 characters

# The bus reports go to: the variable every remediator module sets, and the permission each
# reporting remediator declares on the symbolic resource the module resolves to the ARN
# of the account's default bus.
EVENT_BUS_VARIABLE = "REPORT_EVENT_BUS"
DEFAULT_EVENT_BUS = "default"
EVENT_BUS_RESOURCE = "default_event_bus"
PUT_EVENTS = Permission(
    "events:PutEvents",
    EVENT_BUS_RESOURCE,
    "put the report on the default bus, where the member rule forwards it to the hub",
)
# An SNS message and a PutEvents entry may each be at most 256 KB. The SNS message (the
# whole report as JSON) is always the larger of the two, so fitting it fits both.
SIZE_LIMIT_BYTES = 256 * 1024
# PutEvents answers 200 with per-entry failures; AWS documents which of them to retry.
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsResultEntry.html
RETRYABLE_ENTRY_ERRORS = frozenset({"ThrottlingException", "InternalFailure", "InternalException"})
PUT_ATTEMPTS = 4


class ReportNotForwarded(RuntimeError):
    """EventBridge refused the report's entry, or kept failing it past the retries."""


def sns_subject(text: str) -> str:
    """``text`` as SNS accepts a Subject: ASCII, no line breaks or control characters,
    under 100 characters (cut with an ellipsis)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[\x00-\x1f\x7f]", "", " ".join(ascii_text.split()))
    if len(cleaned) <= SNS_SUBJECT_LIMIT:
        return cleaned
    return cleaned[: SNS_SUBJECT_LIMIT - 3].rstrip() + "..."


def remediation_report(
    *,
    function: str,
    title: str,
    severity: str,
    summary: str,
    actions: Sequence[str],
    account: str,
    region: str,
    resources: Sequence[str] = (),
    finding_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return {
        "version": "0",
        "source": f"{SOURCE_PREFIX}{function}",
        "detail-type": DETAIL_TYPE,
        "account": account,
        "region": region,
        "time": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": list(resources),
        "detail": {
            "title": title,
            "severity": severity,
            "summary": summary,
            "actions": list(actions),
            "findingId": finding_id,
        },
    }


def event_bus() -> str:
    """The bus reports go to (``REPORT_EVENT_BUS``); empty: none."""
    return os.environ.get(EVENT_BUS_VARIABLE, "").strip()


def wanted(topic_arn: str) -> bool:
    """Does a report go anywhere: a notify topic, or a bus to put it on?"""
    return bool(topic_arn or event_bus())


def publish(
    topic_arn: str, report: dict[str, Any], *, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Publish ``report`` to ``topic_arn`` (when set) and put it on the report bus (when
    set); returns the SNS message id ("" without a topic).

    Raises :class:`ReportNotForwarded` when EventBridge refuses the entry or keeps failing
    it, after the SNS message went out: the invocation fails, so its errors alarm and
    Lambda's retries see it (the remediators' actions are idempotent).
    """
    report = fit(report)
    message_id = ""
    if topic_arn:
        subject = sns_subject(f"[{report['detail']['severity']}] {report['detail']['title']}")
        response = aws.client("sns").publish(
            TopicArn=topic_arn, Subject=subject, Message=_message(report)
        )
        message_id = str(response["MessageId"])
    bus = event_bus()
    if bus:
        put_event(bus, report, sleep=sleep)
    return message_id


def event_entry(bus: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """The report as a PutEvents entry: its source, detail type, detail, resources and time."""
    return {
        "EventBusName": bus,
        "Source": report["source"],
        "DetailType": report["detail-type"],
        "Detail": json.dumps(report["detail"], sort_keys=True),
        "Resources": list(report["resources"]),
        "Time": datetime.strptime(report["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
    }


def entry_size(entry: Mapping[str, Any]) -> int:
    """A PutEvents entry's size as AWS calculates it (time 14 bytes, then the UTF-8 bytes of
    source, detail type, detail and each resource).
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html"""
    texts = [entry["Source"], entry["DetailType"], entry["Detail"], *entry["Resources"]]
    return (14 if entry.get("Time") else 0) + sum(len(t.encode("utf-8")) for t in texts)


def put_event(
    bus: str, report: Mapping[str, Any], *, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Put ``report`` on ``bus``; returns the event id. Entries AWS failed with a retryable
    code are put again, with backoff, at most :data:`PUT_ATTEMPTS` times in all."""
    entry = event_entry(bus, report)
    client = aws.client("events")
    failure: dict[str, Any] = {}
    for attempt in range(PUT_ATTEMPTS):
        response = client.put_events(Entries=[entry])
        if not response.get("FailedEntryCount"):
            return str(response["Entries"][0]["EventId"])
        failure = response["Entries"][0]
        if failure.get("ErrorCode") not in RETRYABLE_ENTRY_ERRORS:
            break
        if attempt + 1 < PUT_ATTEMPTS:
            sleep(aws.backoff(attempt))
    logger.error("report not put on the event bus", extra={"failure": failure, "report": report})
    raise ReportNotForwarded(
        f"EventBridge did not take the report {report['detail']['title']!r} on bus {bus!r}: "
        f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')} "
        f"(after {attempt + 1} of {PUT_ATTEMPTS} attempts)"
    )


def fit(report: dict[str, Any], limit: int = SIZE_LIMIT_BYTES) -> dict[str, Any]:
    """``report``, or a copy whose last actions give way to a line saying how many were left
    out, so that its SNS message and its PutEvents entry stay within ``limit`` bytes."""
    if _size(report) <= limit:
        return report
    actions = list(report["detail"]["actions"])

    def cut(kept: int) -> dict[str, Any]:
        note = (
            f"... {len(actions) - kept} more actions left out: the report was over the "
            f"{limit // 1024} KB that SNS and EventBridge accept"
        )
        return {**report, "detail": {**report["detail"], "actions": [*actions[:kept], note]}}

    low, high = 0, len(actions)  # the most actions that fit lies in [low, high)
    if _size(cut(0)) > limit:
        raise ValueError(
            f"report {report['detail']['title']!r} is over {limit} bytes even without its "
            "actions: shorten its summary or resources"
        )
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _size(cut(middle)) <= limit else (low, middle)
    logger.warning(
        "report actions cut to fit", extra={"kept": low, "actions": len(actions), "limit": limit}
    )
    return cut(low)


def _message(report: Mapping[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)


def _size(report: Mapping[str, Any]) -> int:
    return len(_message(report).encode("utf-8"))
