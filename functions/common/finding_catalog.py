"""GuardDuty finding types whose remote party is the attacker, and where its address lives.

One catalog serves every remediator that blocks addresses (WAF IP sets, NACL deny
entries) and the Terraform modules that build their EventBridge rules from
:func:`event_pattern`, so a finding type is added or removed in exactly one place.

What is in, and why: a type belongs here only when GuardDuty reports the *remote* address
as the actor against our resource. Brute force findings report both directions (the
instance can be the target or the attacker); ``connectionDirection`` tells them apart and
only ``INBOUND`` connections are blocked (see ``functions.common.addresses``).

What is out, and why:

- Types where our resource calls out (``Recon:EC2/Portscan``, ``Impact:EC2/PortSweep``,
  ``Impact:EC2/WinRMBruteForce``, ``Backdoor:EC2/DenialOfService.*``,
  ``UnauthorizedAccess:EC2/TorClient``/``TorRelay``, DNS and C&C findings): the remote
  address is a victim or a destination, and blocking it inbound answers nothing.
- ``*/AnomalousBehavior*`` (except RDS successful brute force) and ``PenTest:*``: the
  caller may be our own staff or contracted testers; a human should decide.
- ``UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*``: answered by revoking
  the credentials (incident_response module), not by an edge block.
- ``Discovery:RDS/MaliciousIPCaller``/``TorIPCaller``: AWS does not document which action
  object carries their address; they join when it does.

Sources: the GuardDuty finding-type pages (EC2, IAM, S3, EKS audit log and RDS
protection) and the ``Action`` shape of the GuardDuty API.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Any


class ActionKind(StrEnum):
    """``service.action.actionType`` values and the object that holds ``remoteIpDetails``."""

    NETWORK_CONNECTION = "NETWORK_CONNECTION"
    PORT_PROBE = "PORT_PROBE"
    AWS_API_CALL = "AWS_API_CALL"
    KUBERNETES_API_CALL = "KUBERNETES_API_CALL"
    RDS_LOGIN_ATTEMPT = "RDS_LOGIN_ATTEMPT"

    @property
    def action_key(self) -> str:
        return _ACTION_KEYS[self]


_ACTION_KEYS = {
    ActionKind.NETWORK_CONNECTION: "networkConnectionAction",
    ActionKind.PORT_PROBE: "portProbeAction",
    ActionKind.AWS_API_CALL: "awsApiCallAction",
    ActionKind.KUBERNETES_API_CALL: "kubernetesApiCallAction",
    ActionKind.RDS_LOGIN_ATTEMPT: "rdsLoginAttemptAction",
}

_KUBERNETES_TACTICS = ("CredentialAccess", "DefenseEvasion", "Discovery", "Impact", "Persistence")

_CATALOG: dict[str, ActionKind] = {
    # EC2: the instance is the target of an inbound connection or probe.
    "UnauthorizedAccess:EC2/SSHBruteForce": ActionKind.NETWORK_CONNECTION,
    "UnauthorizedAccess:EC2/RDPBruteForce": ActionKind.NETWORK_CONNECTION,
    "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom": ActionKind.NETWORK_CONNECTION,
    "Recon:EC2/PortProbeUnprotectedPort": ActionKind.PORT_PROBE,
    "Recon:EC2/PortProbeEMRUnprotectedPort": ActionKind.PORT_PROBE,
    # IAM and S3: API calls from addresses on AWS or custom threat lists, or from Tor.
    "UnauthorizedAccess:IAMUser/MaliciousIPCaller": ActionKind.AWS_API_CALL,
    "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom": ActionKind.AWS_API_CALL,
    "UnauthorizedAccess:IAMUser/TorIPCaller": ActionKind.AWS_API_CALL,
    "Recon:IAMUser/MaliciousIPCaller": ActionKind.AWS_API_CALL,
    "Recon:IAMUser/MaliciousIPCaller.Custom": ActionKind.AWS_API_CALL,
    "Recon:IAMUser/TorIPCaller": ActionKind.AWS_API_CALL,
    "Discovery:S3/MaliciousIPCaller": ActionKind.AWS_API_CALL,
    "Discovery:S3/MaliciousIPCaller.Custom": ActionKind.AWS_API_CALL,
    "Discovery:S3/TorIPCaller": ActionKind.AWS_API_CALL,
    "Exfiltration:S3/MaliciousIPCaller": ActionKind.AWS_API_CALL,
    "Impact:S3/MaliciousIPCaller": ActionKind.AWS_API_CALL,
    "UnauthorizedAccess:S3/MaliciousIPCaller.Custom": ActionKind.AWS_API_CALL,
    "UnauthorizedAccess:S3/TorIPCaller": ActionKind.AWS_API_CALL,
    # RDS: login attempts from threat-listed or Tor addresses, and a brute force that worked.
    "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin": ActionKind.RDS_LOGIN_ATTEMPT,
    "CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin": ActionKind.RDS_LOGIN_ATTEMPT,
    "CredentialAccess:RDS/TorIPCaller.FailedLogin": ActionKind.RDS_LOGIN_ATTEMPT,
    "CredentialAccess:RDS/TorIPCaller.SuccessfulLogin": ActionKind.RDS_LOGIN_ATTEMPT,
    "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce": ActionKind.RDS_LOGIN_ATTEMPT,
    # EKS audit logs: Kubernetes API calls from threat-listed or Tor addresses.
    **{
        f"{tactic}:Kubernetes/{family}": ActionKind.KUBERNETES_API_CALL
        for tactic in _KUBERNETES_TACTICS
        for family in ("MaliciousIPCaller", "MaliciousIPCaller.Custom", "TorIPCaller")
    },
}

CATALOG: MappingProxyType[str, ActionKind] = MappingProxyType(_CATALOG)
FINDING_TYPES: tuple[str, ...] = tuple(sorted(_CATALOG))

# EventBridge rejects event patterns longer than this (PutRule EventPattern).
EVENT_PATTERN_MAX_LENGTH = 4096


def action_kind(finding_type: object) -> ActionKind | None:
    """The action kind of a catalog type; ``None`` for anything else (including non-strings)."""
    return _CATALOG.get(finding_type) if isinstance(finding_type, str) else None


def event_pattern(min_severity: float) -> dict[str, Any]:
    """The EventBridge pattern matching catalog findings at or above ``min_severity``."""
    if not 0 <= min_severity <= 10:
        raise ValueError(f"GuardDuty severity runs from 0 to 10, got {min_severity}")
    return {
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {
            "type": list(FINDING_TYPES),
            "severity": [{"numeric": [">=", min_severity]}],
        },
    }
