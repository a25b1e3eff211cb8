"""Findings as the blocking engine sees them, from either of its two inputs.

- A GuardDuty finding (``GuardDuty Finding``): one finding, its addresses and roles from
  the catalog (:mod:`functions.common.finding_catalog`).
- A Security Hub "Block IP" custom action (``Security Hub Findings - Custom Action``
  whose ``resources`` name the configured action ARN): every finding the analyst picked,
  read from the AWS Security Finding Format (ASFF). Addresses come from
  ``Network.SourceIpV4/V6`` (direction ``IN``) and ``Network.DestinationIpV4/V6``
  (direction ``OUT``), ``Action.NetworkConnectionAction.RemoteIpDetails`` (by
  ``ConnectionDirection``), ``Action.PortProbeAction.PortProbeDetails[].RemoteIpDetails``
  and ``Action.AwsApiCallAction.RemoteIpDetails``. A GuardDuty finding forwarded to
  Security Hub keeps its GuardDuty type in ``Types`` (``TTPs/<tactic>/<type with - for
  />``), and the catalog decides it exactly as it decides the GuardDuty event: a type that
  is not ours to block is not blocked however the analyst asks. Findings of other products
  take the roles their ASFF fields give.

``Security Hub Findings - Imported`` events are not acted on: every GuardDuty finding
reaches the blockers directly, and acting on the copy would block twice on one finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from functions.common import addresses
from functions.common.finding_catalog import Answer, Role, entry

# The console lets an analyst pick up to 20 findings per custom action; the API sends
# batches of at most 100.
MAX_FINDINGS_PER_ACTION = 100
_SEVERITY_LABELS = {"INFORMATIONAL": 0.0, "LOW": 1.0, "MEDIUM": 4.0, "HIGH": 7.0, "CRITICAL": 9.0}
_GUARDDUTY_PRODUCT = ":product/aws/guardduty"


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding: what to block, in which role, and why anything else was not."""

    id: str
    type: str
    severity: float
    arn: str | None
    found: list[addresses.FoundAddress] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    subnets: list[str] = field(default_factory=list)
    # Why the whole finding is not acted on (not ours to block, below the threshold).
    ignored: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Decided findings taken together, as an enforcement point applies them."""

    candidates: list[tuple[addresses.IPAddress, Role]]
    rejected: list[tuple[str, str]]
    finding_ids: list[str]
    severity: float
    types: str

    @classmethod
    def of(cls, findings: Sequence[Finding]) -> Batch:
        return cls(
            candidates=[(item.address, item.role) for f in findings for item in f.found],
            rejected=[rejection for f in findings for rejection in f.rejected],
            finding_ids=[f.id for f in findings],
            severity=max((f.severity for f in findings), default=0.0),
            types=", ".join(dict.fromkeys(f.type for f in findings)),
        )


# --------------------------------------------------------------------------- GuardDuty


def _catalog_refusal(finding_type: str) -> str | None:
    """Why the catalog does not let a GuardDuty type be blocked, or None when it does."""
    known = entry(finding_type)
    if known is None:
        return f"GuardDuty finding type {finding_type} is not in the catalog"
    if known.answer is Answer.NOT_OURS:
        return f"GuardDuty finding type {finding_type} is not ours to block: {known.reason}"
    return None


def guardduty_finding(
    *,
    finding_id: str,
    finding_type: str,
    severity: float,
    arn: str | None,
    service: Mapping[str, Any],
    subnets: Sequence[str],
    severity_threshold: float,
) -> Finding:
    """A GuardDuty finding, decided by the catalog and the threshold."""
    base = Finding(finding_id, finding_type, severity, arn, subnets=list(subnets))
    refusal = _catalog_refusal(finding_type)
    if refusal is not None:
        return replace(base, ignored=refusal)
    if severity < severity_threshold:
        return replace(
            base, ignored=f"severity {severity} is below the threshold {severity_threshold}"
        )
    extraction = addresses.extract({"type": finding_type, "service": service})
    return replace(base, found=extraction.found, rejected=extraction.rejected)


# --------------------------------------------------------------------------- Security Hub


class CustomActionDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    action_name: StrictStr = Field(alias="actionName", min_length=1, max_length=256)
    findings: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_FINDINGS_PER_ACTION)


class CustomActionEvent(EventBridgeModel):
    detail: CustomActionDetail


def _get(data: object, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def guardduty_type(finding: Mapping[str, Any]) -> str | None:
    """The GuardDuty type of a GuardDuty finding in ASFF, from ``Types``.

    Security Hub writes ``Backdoor:EC2/C&CActivity.B`` as ``TTPs/Command and
    Control/Backdoor:EC2-C&CActivity.B``.
    """
    if not str(finding.get("ProductArn", "")).endswith(_GUARDDUTY_PRODUCT):
        return None
    types = finding.get("Types")
    for text in types if isinstance(types, list) else []:
        if not isinstance(text, str):
            continue
        last = text.rsplit("/", 1)[-1]
        threat, _, rest = last.partition(":")
        resource, dash, family = rest.partition("-")
        if threat and dash:
            return f"{threat}:{resource}/{family}"
    return None


def _asff_candidates(finding: Mapping[str, Any]) -> Iterator[tuple[str, Role, object]]:
    network = finding.get("Network")
    direction = _get(network, "Direction")
    if direction == "IN":
        for version in ("V4", "V6"):
            yield (
                f"Network.SourceIp{version}",
                Role.INBOUND_ATTACKER,
                _get(network, f"SourceIp{version}"),
            )
    elif direction == "OUT":
        for version in ("V4", "V6"):
            path = f"Network.DestinationIp{version}"
            yield path, Role.OUTBOUND_DESTINATION, _get(network, f"DestinationIp{version}")
    action = finding.get("Action")
    connection = _get(action, "NetworkConnectionAction")
    role = {"INBOUND": Role.INBOUND_ATTACKER, "OUTBOUND": Role.OUTBOUND_DESTINATION}.get(
        _get(connection, "ConnectionDirection")
    )
    if role is not None:
        path = "Action.NetworkConnectionAction.RemoteIpDetails.IpAddressV4"
        yield path, role, _get(connection, "RemoteIpDetails", "IpAddressV4")
    yield (
        "Action.AwsApiCallAction.RemoteIpDetails.IpAddressV4",
        Role.INBOUND_ATTACKER,
        _get(action, "AwsApiCallAction", "RemoteIpDetails", "IpAddressV4"),
    )
    probes = _get(action, "PortProbeAction", "PortProbeDetails")
    for index, probe in enumerate(probes if isinstance(probes, list) else []):
        yield (
            f"Action.PortProbeAction.PortProbeDetails[{index}].RemoteIpDetails.IpAddressV4",
            Role.INBOUND_ATTACKER,
            _get(probe, "RemoteIpDetails", "IpAddressV4"),
        )


def _severity(finding: Mapping[str, Any]) -> float:
    normalized = _get(finding, "Severity", "Normalized")
    if isinstance(normalized, int | float) and not isinstance(normalized, bool):
        return max(0.0, min(10.0, normalized / 10))
    return _SEVERITY_LABELS.get(str(_get(finding, "Severity", "Label")), 0.0)


_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")


def guardduty_subnets(resource: Mapping[str, Any]) -> list[str]:
    """Subnet ids of a GuardDuty finding's instance (``instanceDetails.networkInterfaces``).

    Findings come from outside: anything odd-shaped yields nothing rather than an error.
    """
    details = resource.get("instanceDetails")
    interfaces = details.get("networkInterfaces") if isinstance(details, Mapping) else None
    if not isinstance(interfaces, list):
        return []
    found = [i.get("subnetId") for i in interfaces if isinstance(i, Mapping)]
    return list(dict.fromkeys(s for s in found if isinstance(s, str) and _SUBNET_ID.fullmatch(s)))


def _asff_subnets(finding: Mapping[str, Any]) -> list[str]:
    resources = finding.get("Resources")
    found = [
        _get(resource, "Details", "AwsEc2Instance", "SubnetId")
        for resource in (resources if isinstance(resources, list) else [])
    ]
    return list(dict.fromkeys(s for s in found if isinstance(s, str)))


def security_hub_finding(raw: Mapping[str, Any], severity_threshold: float) -> Finding:
    """One ASFF finding of a Block IP action, decided as its GuardDuty twin would be."""
    finding_id = str(raw.get("Id") or "")[:512] or "(no Id)"
    gd_type = guardduty_type(raw)
    known = entry(gd_type)
    label = gd_type or str(raw.get("Title") or raw.get("ProductName") or "finding")[:120]
    severity = _severity(raw)
    base = Finding(
        finding_id, label, severity, finding_id if finding_id.startswith("arn:") else None
    )
    ignored = _catalog_refusal(gd_type) if gd_type is not None else None
    if ignored is None and severity < severity_threshold:
        ignored = f"severity {severity} is below the threshold {severity_threshold}"
    if ignored is not None:
        return replace(base, ignored=ignored)
    allowed = known.roles if known is not None else frozenset(Role)
    extraction = addresses.collect(
        (path, role, value) for path, role, value in _asff_candidates(raw) if role in allowed
    )
    return replace(
        base, found=extraction.found, rejected=extraction.rejected, subnets=_asff_subnets(raw)
    )


def security_hub_findings(event: CustomActionEvent, severity_threshold: float) -> Sequence[Finding]:
    return [security_hub_finding(raw, severity_threshold) for raw in event.detail.findings]
