"""The origin check every remediator runs before acting on an EventBridge event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.common import events

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parent.parent / "events"


@pytest.mark.parametrize(
    "fixture",
    [
        "gd_waf_ssh_bruteforce_inbound.json",
        "securityhub_findings_custom_action.json",
        "securityhub_findings_imported.json",
        "config_rules_compliance_change.json",
    ],
)
def test_events_as_aws_sends_them_pass(fixture: str) -> None:
    assert events.source_mismatch(json.loads((EVENTS / fixture).read_text())) is None


@pytest.mark.parametrize("source", ["custom.attacker", "aws.securityhub", None, 7])
def test_a_guardduty_finding_from_another_source_is_named(source: object) -> None:
    event = json.loads((EVENTS / "gd_waf_ssh_bruteforce_inbound.json").read_text())
    event["source"] = source
    reason = events.source_mismatch(event)
    assert reason is not None
    assert "GuardDuty Finding" in reason and "aws.guardduty" in reason


def test_detail_types_not_listed_are_left_to_the_caller() -> None:
    assert events.source_mismatch({"detail-type": "Something Else", "source": "x"}) is None
    assert events.source_mismatch({"action": "sweep"}) is None
