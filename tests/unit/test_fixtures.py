"""The sample findings carry the severity GuardDuty documents for their type and direction.

Tests that feed a remediator a finding GuardDuty would never send prove nothing about
real accounts: the blockers once ignored every inbound SSH brute force because the
fixtures rated it Medium, where GuardDuty rates it Low. Every GuardDuty finding in
tests/events/ and bundle/demo_findings/ is checked against this table, and a new finding
type needs its documented severity (and source) here first.

Sources:
- severity levels and their numbers (Low 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9,
  Critical 9.0-10.0; generated findings carry 2, 5 and 8):
  https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings-severity.html
- per type: https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_finding-types-active.html
  and the EC2, IAM, S3, EKS audit log and RDS protection finding-type pages it links.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bundle.paths import ROOT

pytestmark = pytest.mark.unit

LOW, MEDIUM, HIGH = 2.0, 5.0, 8.0

# Types whose severity depends on the finding, and how (from each type's own page).
# Brute force: "Low if a brute force attack is aimed at one of your EC2 instances ...
# High if your EC2 instance is being used to perform the brute force attack".
# Port probe: "Low ... Medium if the probed port is used by Elasticsearch (9200 or 9300)".
_BRUTE_FORCE = {"INBOUND": LOW, "OUTBOUND": HIGH}
_ELASTICSEARCH_PORTS = {9200, 9300}

DOCUMENTED = {
    "Backdoor:EC2/C&CActivity.B": HIGH,
    "Backdoor:EC2/C&CActivity.B!DNS": HIGH,
    "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin": MEDIUM,
    "CredentialAccess:RDS/TorIPCaller.FailedLogin": MEDIUM,
    "Discovery:Kubernetes/TorIPCaller": MEDIUM,
    "Discovery:S3/TorIPCaller": MEDIUM,
    "Recon:EC2/PortProbeEMRUnprotectedPort": HIGH,
    "Recon:IAMUser/MaliciousIPCaller": MEDIUM,
    "Recon:IAMUser/MaliciousIPCaller.Custom": MEDIUM,
    "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom": MEDIUM,
    "UnauthorizedAccess:EC2/TorIPCaller": MEDIUM,
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS": HIGH,
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS": HIGH,
    "UnauthorizedAccess:IAMUser/MaliciousIPCaller": MEDIUM,
    "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom": MEDIUM,
    "UnauthorizedAccess:IAMUser/TorIPCaller": MEDIUM,
    "UnauthorizedAccess:S3/TorIPCaller": HIGH,
}


def documented_severity(detail: dict[str, Any]) -> float:
    finding_type = detail["type"]
    action = detail.get("service", {}).get("action", {})
    if finding_type in (
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "UnauthorizedAccess:EC2/RDPBruteForce",
    ):
        return _BRUTE_FORCE[action["networkConnectionAction"]["connectionDirection"]]
    if finding_type == "Recon:EC2/PortProbeUnprotectedPort":
        probes = action["portProbeAction"]["portProbeDetails"]
        ports = {probe["localPortDetails"]["port"] for probe in probes}
        return MEDIUM if ports & _ELASTICSEARCH_PORTS else LOW
    if finding_type not in DOCUMENTED:
        pytest.fail(
            f"{finding_type}: add GuardDuty's documented severity (and its source) to "
            "tests/unit/test_fixtures.py before using it in a fixture"
        )
    return DOCUMENTED[finding_type]


def guardduty_fixtures() -> list[Path]:
    candidates = sorted((ROOT / "tests" / "events").glob("*.json"))
    candidates += sorted((ROOT / "bundle" / "demo_findings").glob("*.json"))
    return [
        path
        for path in candidates
        if json.loads(path.read_text()).get("detail-type") == "GuardDuty Finding"
    ]


@pytest.mark.parametrize("path", guardduty_fixtures(), ids=lambda p: p.name)
def test_guardduty_fixture_carries_the_documented_severity(path: Path) -> None:
    detail = json.loads(path.read_text())["detail"]
    assert float(detail["severity"]) == documented_severity(detail), (
        f"{path.relative_to(ROOT)}: {detail['type']} is documented as "
        f"{documented_severity(detail)}, the fixture says {detail['severity']}"
    )


def test_there_are_guardduty_fixtures_of_both_directions() -> None:
    directions = {
        json.loads(path.read_text())["detail"]["service"]["action"]
        .get("networkConnectionAction", {})
        .get("connectionDirection")
        for path in guardduty_fixtures()
    }
    assert {"INBOUND", "OUTBOUND"} <= directions
