"""Findings as the engine reads them: GuardDuty and Security Hub (ASFF) Block IP actions."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from functions.common import intake
from functions.common.finding_catalog import Role

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[1] / "events"


def block_ip_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "securityhub_block_ip.json").read_text())
    return event


def decided(event: dict[str, Any], threshold: float = 1.0) -> list[intake.Finding]:
    parsed = intake.CustomActionEvent.model_validate(event)
    return list(intake.security_hub_findings(parsed, threshold))


def found(finding: intake.Finding) -> list[tuple[str, Role]]:
    return [(str(item.address), item.role) for item in finding.found]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (
            ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"],
            "UnauthorizedAccess:EC2/SSHBruteForce",
        ),
        (["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B"], "Backdoor:EC2/C&CActivity.B"),
        (
            ["TTPs/Discovery/Recon:IAMUser-MaliciousIPCaller.Custom"],
            "Recon:IAMUser/MaliciousIPCaller.Custom",
        ),
        (["Software and Configuration Checks"], None),
        ("not a list", None),
    ],
)
def test_the_guardduty_type_is_read_back_from_asff_types(types: Any, expected: str | None) -> None:
    raw = {"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty", "Types": types}
    assert intake.guardduty_type(raw) == expected


def test_other_products_have_no_guardduty_type() -> None:
    raw = {
        "ProductArn": "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default",
        "Types": ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"],
    }
    assert intake.guardduty_type(raw) is None


def test_every_finding_of_a_block_ip_action_is_read_with_its_role() -> None:
    ssh, cc, probe, iam, portscan, third_party = decided(block_ip_event())

    # Network.SourceIpV4 and the action's RemoteIpDetails name the same attacker once.
    assert found(ssh) == [("185.220.101.46", Role.INBOUND_ATTACKER)]
    assert ssh.type == "UnauthorizedAccess:EC2/SSHBruteForce"
    assert ssh.severity == 2.0
    assert ssh.subnets == ["subnet-4975b475"]
    assert found(cc) == [("45.137.21.9", Role.OUTBOUND_DESTINATION)]
    # Our own instance (Network.SourceIpV4 of an outbound connection) is never a candidate.
    assert "172.31.43.6" not in {address for address, _ in found(cc)}
    assert found(probe) == [
        ("80.82.77.139", Role.INBOUND_ATTACKER),
        ("198.51.100.77", Role.INBOUND_ATTACKER),  # rejected later: documentation range
        ("45.155.205.233", Role.INBOUND_ATTACKER),
    ]
    assert found(iam) == [("185.220.100.252", Role.INBOUND_ATTACKER)]
    assert portscan.ignored is not None and "not ours to block" in portscan.ignored
    assert portscan.found == []
    # A product other than GuardDuty: roles from its ASFF fields, IPv4 and IPv6 both.
    assert third_party.type == "Exploit attempt against the web tier"
    assert third_party.severity == 7.0
    assert found(third_party) == [
        ("10.20.30.40", Role.INBOUND_ATTACKER),  # rejected later: private
        ("2a01:4f8:c17:2a45::1", Role.INBOUND_ATTACKER),
    ]


def test_a_block_ip_finding_below_the_threshold_is_ignored_with_the_reason() -> None:
    ssh, *_ = decided(block_ip_event(), threshold=4.0)
    assert ssh.ignored == "severity 2.0 is below the threshold 4.0"


def test_a_guardduty_type_outside_the_catalog_is_ignored_in_asff_too() -> None:
    event = block_ip_event()
    event["detail"]["findings"][0]["Types"] = ["TTPs/Initial Access/Made:Up-Type"]
    assert decided(event)[0].ignored == "GuardDuty finding type Made:Up/Type is not in the catalog"


def test_whitespace_and_garbage_in_asff_are_rejected_with_the_field() -> None:
    event = block_ip_event()
    raw = event["detail"]["findings"][5]
    raw["Network"]["SourceIpV6"] = " 2a01:4f8:c17:2a45::1"
    raw["Network"]["SourceIpV4"] = "not-an-address"
    (third_party,) = decided(event)[5:]
    assert third_party.found == []
    assert [reason.split(":")[0] for _, reason in third_party.rejected] == [
        "Network.SourceIpV4",
        "Network.SourceIpV6",
    ]
    assert "surrounding whitespace" in third_party.rejected[1][1]


def test_odd_shaped_asff_yields_nothing_rather_than_raising() -> None:
    event = block_ip_event()
    event["detail"]["findings"] = [
        {"Network": "x", "Action": {"PortProbeAction": {"PortProbeDetails": ["x", 1]}}},
        {"Action": {"NetworkConnectionAction": {"ConnectionDirection": "SIDEWAYS"}}},
        copy.deepcopy(event["detail"]["findings"][0]) | {"Severity": {"Label": "bogus"}},
    ]
    findings = decided(event, threshold=0.0)
    assert [f.found for f in findings[:2]] == [[], []]
    assert findings[2].severity == 0.0
    assert [ipaddress.ip_address(str(item.address)) for item in findings[2].found] == [
        ipaddress.ip_address("185.220.101.46")
    ]
