"""The message every remediator publishes about what it did.

It is shaped like an EventBridge event (``source`` / ``detail-type`` / ``detail``) so the
notifier formats it like any other event, and so a platform team can route it with an
EventBridge rule too. Remediators never format chat or e-mail text themselves.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from functions.common import aws

SOURCE_PREFIX = "playbook."
DETAIL_TYPE = "Playbook Remediation"
SEVERITIES = ("HIGH", "MEDIUM", "LOW", "INFO")
SNS_SUBJECT_LIMIT = 99  # SNS wants fewer than 100 characters


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


def publish(topic_arn: str, report: dict[str, Any]) -> str:
    """Publish ``report`` to ``topic_arn``; returns the SNS message id."""
    subject = sns_subject(f"[{report['detail']['severity']}] {report['detail']['title']}")
    response = aws.client("sns").publish(
        TopicArn=topic_arn, Subject=subject, Message=json.dumps(report, sort_keys=True)
    )
    return str(response["MessageId"])
