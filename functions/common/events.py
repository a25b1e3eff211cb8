"""Which AWS service sends which EventBridge detail type.

EventBridge rules filter on ``source``, but a remediator must not trust its caller for
that: anyone allowed to invoke the function (or to put events on a bus that targets it)
can send a ``GuardDuty Finding`` of their own. ``aws.*`` sources cannot be put by a
caller on the default bus, so the pair (detail type, source) is the event's claim of
origin, and a remediator acts only when the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GUARDDUTY_FINDING = "GuardDuty Finding"
SECURITY_HUB_CUSTOM_ACTION = "Security Hub Findings - Custom Action"
SECURITY_HUB_IMPORTED = "Security Hub Findings - Imported"
CONFIG_COMPLIANCE_CHANGE = "Config Rules Compliance Change"
SCHEDULED_EVENT = "Scheduled Event"

# https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-<service>.html
EXPECTED_SOURCES: Mapping[str, str] = {
    GUARDDUTY_FINDING: "aws.guardduty",
    SECURITY_HUB_CUSTOM_ACTION: "aws.securityhub",
    SECURITY_HUB_IMPORTED: "aws.securityhub",
    CONFIG_COMPLIANCE_CHANGE: "aws.config",
    SCHEDULED_EVENT: "aws.events",
}


def source_mismatch(event: Mapping[str, Any]) -> str | None:
    """Why the event's ``source`` is not the service its ``detail-type`` belongs to, or
    None when they agree (or the detail type is not one of AWS's listed here)."""
    detail_type = event.get("detail-type")
    expected = EXPECTED_SOURCES.get(detail_type) if isinstance(detail_type, str) else None
    if expected is None:
        return None
    source = event.get("source")
    if source == expected:
        return None
    return (
        f"event claims detail-type {detail_type!r} but its source is "
        f"{str(source)[:80]!r}, not {expected!r}"
    )
