"""Every published GuardDuty finding type, what its remote party is to us, and where its
address lives.

One catalog serves every remediator that blocks addresses (WAF IP sets, NACL deny
entries), the EventBridge rules of their modules (:func:`event_pattern`) and the table in
``docs/finding-catalog.md`` (:func:`markdown`), so a finding type is decided in exactly
one place.

Each type gets one :class:`Answer` and the reason for it:

- ``INBOUND``: the remote party acted against our resource (it connected, probed, called
  an API, logged in); it is an *inbound attacker*. Findings that report a connection in
  both directions (brute force) count only ``INBOUND`` connections: an outbound one makes
  our instance the attacker.
- ``OUTBOUND``: our workload reached out to a party GuardDuty names as malicious (a
  command-and-control server, a drop point, a mining pool); the remote party is an
  *outbound malicious destination*. Only a network ACL's egress side can answer it: WAF
  sees inbound requests only.
- ``BY_DIRECTION``: threat-list matches (``.Custom`` lists, Tor exit nodes) whose
  ``connectionDirection`` says which of the two the remote party is.
- ``NOT_OURS``: blocking the remote address answers nothing (our instance is the actor
  and the remote party its victim), the address is a domain name only (DNS findings), the
  finding names no remote address (malware, runtime, policy findings), a human should
  decide (anomaly and pen-test findings, where the caller may be our own staff), or the
  answer is to revoke credentials (incident_response), not an edge block.

Sources: the GuardDuty finding-type pages (EC2, IAM, S3, EKS audit logs, Runtime
Monitoring, Malware Protection, RDS, Lambda, attack sequences) at
https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_finding-types-active.html and
the ``Action`` shape of the GuardDuty API. A type missing here (a new one) is not acted
on, and the remediators say so in their result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


class Role(StrEnum):
    """What the remote party of a finding is to us, and so which side of a point answers it."""

    INBOUND_ATTACKER = "inbound attacker"
    OUTBOUND_DESTINATION = "outbound malicious destination"


class Answer(StrEnum):
    INBOUND = "inbound attacker"
    OUTBOUND = "outbound malicious destination"
    BY_DIRECTION = "by connection direction"
    NOT_OURS = "not ours to block"


# connectionDirection values of a NETWORK_CONNECTION action.
INBOUND = "INBOUND"
OUTBOUND = "OUTBOUND"


@dataclass(frozen=True, slots=True)
class Entry:
    """One finding type: the answer, why, and the action object that holds the address."""

    finding_type: str
    answer: Answer
    reason: str
    kind: ActionKind | None = None

    @property
    def roles(self) -> frozenset[Role]:
        """Every role the remote party of this type can have."""
        return frozenset(
            role for direction in (INBOUND, OUTBOUND) if (role := self.role(direction))
        )

    def role(self, direction: object) -> Role | None:
        """The remote party's role given the finding's ``connectionDirection``.

        Only network connections carry a direction; for every other action (a probe, an
        API call, a login) the remote party is the caller, so an inbound answer holds
        whatever the direction says.
        """
        if self.answer is Answer.NOT_OURS:
            return None
        if self.kind is not ActionKind.NETWORK_CONNECTION:
            return Role.INBOUND_ATTACKER if self.answer is Answer.INBOUND else None
        if direction == INBOUND and self.answer in (Answer.INBOUND, Answer.BY_DIRECTION):
            return Role.INBOUND_ATTACKER
        if direction == OUTBOUND and self.answer in (Answer.OUTBOUND, Answer.BY_DIRECTION):
            return Role.OUTBOUND_DESTINATION
        return None


# --------------------------------------------------------------------------- reasons

_BRUTE_FORCE = (
    "brute force against our resource: an INBOUND connection makes the remote party the "
    "attacker; an OUTBOUND one makes our instance the attacker, and its target is not ours "
    "to block"
)
_PROBE = "the remote party probed an open port of our instance"
_THREAT_LIST_CALLER = (
    "the remote party called our API from an address on a threat list (AWS's or one of "
    "ours) or from a Tor exit node"
)
_THREAT_LIST_CONNECTION = (
    "the address is on a threat list (AWS's or ours) or is a Tor exit node; the connection "
    "direction says whether it attacked us (INBOUND) or our workload reached it (OUTBOUND)"
)
_TOR_IP_CALLER = (
    "a Tor exit node connected to our instance (INBOUND): the remote party is the caller"
)
_RDS_LOGIN = "the remote party attempted to log in to our database"
_C_AND_C = (
    "our workload reached a command-and-control server: deny the destination at the "
    "egress side so the compromised workload cannot take orders"
)
_DESTINATION = (
    "our workload reached an address GuardDuty names as malicious (mining pool, drop "
    "point, black hole): deny the destination at the egress side"
)
_LAMBDA = " (only a function attached to a VPC sends its traffic through a network ACL)"
_OUR_ACTOR = (
    "our resource is the actor and the remote party its victim or peer: isolate the "
    "resource (forensics), do not block the other side"
)
_DNS = (
    "the finding names a domain, not an address: DNS answers change, so there is no address to deny"
)
_NO_ADDRESS = "the finding names no remote address (process, file, policy or configuration)"
_HUMAN = (
    "the caller may be our own staff or contracted testers (anomaly, pen-test and "
    "login findings): a human should decide"
)
_REVOKE = (
    "credentials are being used elsewhere: revoke them (incident_response); an edge block "
    "does not stop that"
)
_SEQUENCE = "an attack sequence groups other findings, each answered on its own"
_UNDOCUMENTED = (
    "AWS does not document which action object carries the address; it joins when it does"
)
_SUCCESSFUL_ANONYMOUS = (
    "an anonymous caller succeeded because the cluster allows it: fix the cluster's "
    "permissions; a human should decide about the caller"
)


def _entries(answer: Answer, reason: str, kind: ActionKind | None, *types: str) -> list[Entry]:
    return [Entry(finding_type, answer, reason, kind) for finding_type in types]


_NC = ActionKind.NETWORK_CONNECTION
_API = ActionKind.AWS_API_CALL
_K8S = ActionKind.KUBERNETES_API_CALL
_RDS = ActionKind.RDS_LOGIN_ATTEMPT
_K8S_TACTICS = ("CredentialAccess", "DefenseEvasion", "Discovery", "Impact", "Persistence")

_ALL: list[Entry] = [
    # ---------------------------------------------------------------- EC2
    *_entries(
        Answer.INBOUND,
        _BRUTE_FORCE,
        _NC,
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "UnauthorizedAccess:EC2/RDPBruteForce",
    ),
    *_entries(
        Answer.INBOUND,
        _PROBE,
        ActionKind.PORT_PROBE,
        "Recon:EC2/PortProbeUnprotectedPort",
        "Recon:EC2/PortProbeEMRUnprotectedPort",
    ),
    Entry("UnauthorizedAccess:EC2/TorIPCaller", Answer.INBOUND, _TOR_IP_CALLER, _NC),
    Entry(
        "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom",
        Answer.BY_DIRECTION,
        _THREAT_LIST_CONNECTION,
        _NC,
    ),
    Entry("Backdoor:EC2/C&CActivity.B", Answer.OUTBOUND, _C_AND_C, _NC),
    *_entries(
        Answer.OUTBOUND,
        _DESTINATION,
        _NC,
        "CryptoCurrency:EC2/BitcoinTool.B",
        "Trojan:EC2/BlackholeTraffic",
        "Trojan:EC2/DropPoint",
    ),
    *_entries(
        Answer.NOT_OURS,
        _OUR_ACTOR,
        None,
        "Backdoor:EC2/DenialOfService.Dns",
        "Backdoor:EC2/DenialOfService.Tcp",
        "Backdoor:EC2/DenialOfService.Udp",
        "Backdoor:EC2/DenialOfService.UdpOnTcpPorts",
        "Backdoor:EC2/DenialOfService.UnusualProtocol",
        "Backdoor:EC2/Spambot",
        "Impact:EC2/PortSweep",
        "Impact:EC2/WinRMBruteForce",
        "Recon:EC2/Portscan",
        "UnauthorizedAccess:EC2/TorClient",
        "UnauthorizedAccess:EC2/TorRelay",
        "Trojan:EC2/DNSDataExfiltration",
    ),
    *_entries(
        Answer.NOT_OURS,
        _HUMAN,
        None,
        "Behavior:EC2/NetworkPortUnusual",
        "Behavior:EC2/TrafficVolumeUnusual",
        "DefenseEvasion:EC2/UnusualDNSResolver",
        "DefenseEvasion:EC2/UnusualDoHActivity",
        "DefenseEvasion:EC2/UnusualDoTActivity",
    ),
    *_entries(
        Answer.NOT_OURS,
        _DNS,
        None,
        "Backdoor:EC2/C&CActivity.B!DNS",
        "CryptoCurrency:EC2/BitcoinTool.B!DNS",
        "Impact:EC2/AbusedDomainRequest.Reputation",
        "Impact:EC2/BitcoinDomainRequest.Reputation",
        "Impact:EC2/MaliciousDomainRequest.Custom",
        "Impact:EC2/MaliciousDomainRequest.Reputation",
        "Impact:EC2/SuspiciousDomainRequest.Reputation",
        "Trojan:EC2/BlackholeTraffic!DNS",
        "Trojan:EC2/DGADomainRequest.B",
        "Trojan:EC2/DGADomainRequest.C!DNS",
        "Trojan:EC2/DriveBySourceTraffic!DNS",
        "Trojan:EC2/DropPoint!DNS",
        "Trojan:EC2/PhishingDomainRequest!DNS",
        "UnauthorizedAccess:EC2/MetadataDNSRebind",
    ),
    # ---------------------------------------------------------------- IAM
    *_entries(
        Answer.INBOUND,
        _THREAT_LIST_CALLER,
        _API,
        "Recon:IAMUser/MaliciousIPCaller",
        "Recon:IAMUser/MaliciousIPCaller.Custom",
        "Recon:IAMUser/TorIPCaller",
        "UnauthorizedAccess:IAMUser/MaliciousIPCaller",
        "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom",
        "UnauthorizedAccess:IAMUser/TorIPCaller",
    ),
    *_entries(
        Answer.NOT_OURS,
        _REVOKE,
        None,
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS",
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
    ),
    *_entries(
        Answer.NOT_OURS,
        _HUMAN,
        None,
        "CredentialAccess:IAMUser/AnomalousBehavior",
        "DefenseEvasion:IAMUser/AnomalousBehavior",
        "DefenseEvasion:IAMUser/BedrockLoggingDisabled",
        "Discovery:IAMUser/AnomalousBehavior",
        "Exfiltration:IAMUser/AnomalousBehavior",
        "Impact:IAMUser/AnomalousBehavior",
        "InitialAccess:IAMUser/AnomalousBehavior",
        "PenTest:IAMUser/KaliLinux",
        "PenTest:IAMUser/ParrotLinux",
        "PenTest:IAMUser/PentooLinux",
        "Persistence:IAMUser/AnomalousBehavior",
        "Policy:IAMUser/RootCredentialUsage",
        "Policy:IAMUser/ShortTermRootCredentialUsage",
        "PrivilegeEscalation:IAMUser/AnomalousBehavior",
        "Stealth:IAMUser/CloudTrailLoggingDisabled",
        "Stealth:IAMUser/PasswordPolicyChange",
        "UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B",
    ),
    # ---------------------------------------------------------------- S3
    *_entries(
        Answer.INBOUND,
        _THREAT_LIST_CALLER,
        _API,
        "Discovery:S3/MaliciousIPCaller",
        "Discovery:S3/MaliciousIPCaller.Custom",
        "Discovery:S3/TorIPCaller",
        "Exfiltration:S3/MaliciousIPCaller",
        "Impact:S3/MaliciousIPCaller",
        "UnauthorizedAccess:S3/MaliciousIPCaller.Custom",
        "UnauthorizedAccess:S3/TorIPCaller",
    ),
    *_entries(
        Answer.NOT_OURS,
        _HUMAN,
        None,
        "Discovery:S3/AnomalousBehavior",
        "Exfiltration:S3/AnomalousBehavior",
        "Impact:S3/AnomalousBehavior.Delete",
        "Impact:S3/AnomalousBehavior.Permission",
        "Impact:S3/AnomalousBehavior.Write",
        "PenTest:S3/KaliLinux",
        "PenTest:S3/ParrotLinux",
        "PenTest:S3/PentooLinux",
        "Policy:S3/AccountBlockPublicAccessDisabled",
        "Policy:S3/BucketAnonymousAccessGranted",
        "Policy:S3/BucketBlockPublicAccessDisabled",
        "Policy:S3/BucketPublicAccessGranted",
        "Stealth:S3/ServerAccessLoggingDisabled",
    ),
    # ---------------------------------------------------------------- EKS audit logs
    *_entries(
        Answer.INBOUND,
        _THREAT_LIST_CALLER,
        _K8S,
        *(
            f"{tactic}:Kubernetes/{family}"
            for tactic in _K8S_TACTICS
            for family in ("MaliciousIPCaller", "MaliciousIPCaller.Custom", "TorIPCaller")
        ),
    ),
    *_entries(
        Answer.NOT_OURS,
        _SUCCESSFUL_ANONYMOUS,
        None,
        *(f"{tactic}:Kubernetes/SuccessfulAnonymousAccess" for tactic in _K8S_TACTICS),
    ),
    *_entries(
        Answer.NOT_OURS,
        _HUMAN,
        None,
        "CredentialAccess:Kubernetes/AnomalousBehavior.SecretsAccessed",
        "Discovery:Kubernetes/AnomalousBehavior.PermissionChecked",
        "Execution:Kubernetes/AnomalousBehavior.ExecInPod",
        "Execution:Kubernetes/AnomalousBehavior.WorkloadDeployed",
        "Execution:Kubernetes/ExecInKubeSystemPod",
        "Persistence:Kubernetes/AnomalousBehavior.WorkloadDeployed!ContainerWithSensitiveMount",
        "Persistence:Kubernetes/ContainerWithSensitiveMount",
        "Policy:Kubernetes/AdminAccessToDefaultServiceAccount",
        "Policy:Kubernetes/AnonymousAccessGranted",
        "Policy:Kubernetes/ExposedDashboard",
        "Policy:Kubernetes/KubeflowDashboardExposed",
        "PrivilegeEscalation:Kubernetes/AnomalousBehavior.RoleBindingCreated",
        "PrivilegeEscalation:Kubernetes/AnomalousBehavior.RoleCreated",
        "PrivilegeEscalation:Kubernetes/AnomalousBehavior.WorkloadDeployed!PrivilegedContainer",
        "PrivilegeEscalation:Kubernetes/PrivilegedContainer",
    ),
    # ---------------------------------------------------------------- RDS
    *_entries(
        Answer.INBOUND,
        _RDS_LOGIN,
        _RDS,
        "CredentialAccess:RDS/AnomalousBehavior.SuccessfulBruteForce",
        "CredentialAccess:RDS/MaliciousIPCaller.FailedLogin",
        "CredentialAccess:RDS/MaliciousIPCaller.SuccessfulLogin",
        "CredentialAccess:RDS/TorIPCaller.FailedLogin",
        "CredentialAccess:RDS/TorIPCaller.SuccessfulLogin",
    ),
    *_entries(
        Answer.NOT_OURS,
        _HUMAN,
        None,
        "CredentialAccess:RDS/AnomalousBehavior.FailedLogin",
        "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin",
    ),
    *_entries(
        Answer.NOT_OURS,
        _UNDOCUMENTED,
        None,
        "Discovery:RDS/MaliciousIPCaller",
        "Discovery:RDS/TorIPCaller",
    ),
    # ---------------------------------------------------------------- Lambda
    Entry("Backdoor:Lambda/C&CActivity.B", Answer.OUTBOUND, _C_AND_C + _LAMBDA, _NC),
    *_entries(
        Answer.OUTBOUND,
        _DESTINATION + _LAMBDA,
        _NC,
        "CryptoCurrency:Lambda/BitcoinTool.B",
        "Trojan:Lambda/BlackholeTraffic",
        "Trojan:Lambda/DropPoint",
    ),
    Entry(
        "UnauthorizedAccess:Lambda/MaliciousIPCaller.Custom",
        Answer.BY_DIRECTION,
        _THREAT_LIST_CONNECTION + _LAMBDA,
        _NC,
    ),
    *_entries(
        Answer.NOT_OURS,
        _OUR_ACTOR,
        None,
        "UnauthorizedAccess:Lambda/TorClient",
        "UnauthorizedAccess:Lambda/TorRelay",
    ),
    # ---------------------------------------------------------------- Runtime Monitoring
    # Runtime findings describe a process on the host (runtimeDetails); the few that carry
    # a remote address do so in a network connection, with the host as the caller.
    Entry("Backdoor:Runtime/C&CActivity.B", Answer.OUTBOUND, _C_AND_C, _NC),
    *_entries(
        Answer.OUTBOUND,
        _DESTINATION,
        _NC,
        "CryptoCurrency:Runtime/BitcoinTool.B",
        "Trojan:Runtime/BlackholeTraffic",
        "Trojan:Runtime/DropPoint",
    ),
    *_entries(
        Answer.NOT_OURS,
        _DNS,
        None,
        "Backdoor:Runtime/C&CActivity.B!DNS",
        "CryptoCurrency:Runtime/BitcoinTool.B!DNS",
        "Impact:Runtime/AbusedDomainRequest.Reputation",
        "Impact:Runtime/BitcoinDomainRequest.Reputation",
        "Impact:Runtime/MaliciousDomainRequest.Reputation",
        "Impact:Runtime/SuspiciousDomainRequest.Reputation",
        "Trojan:Runtime/BlackholeTraffic!DNS",
        "Trojan:Runtime/DGADomainRequest.C!DNS",
        "Trojan:Runtime/DriveBySourceTraffic!DNS",
        "Trojan:Runtime/DropPoint!DNS",
        "Trojan:Runtime/PhishingDomainRequest!DNS",
        "UnauthorizedAccess:Runtime/MetadataDNSRebind",
    ),
    *_entries(
        Answer.NOT_OURS,
        _OUR_ACTOR,
        None,
        "UnauthorizedAccess:Runtime/TorClient",
        "UnauthorizedAccess:Runtime/TorRelay",
    ),
    *_entries(
        Answer.NOT_OURS,
        _NO_ADDRESS,
        None,
        "DefenseEvasion:Runtime/FilelessExecution",
        "DefenseEvasion:Runtime/KernelModuleLoaded",
        "DefenseEvasion:Runtime/ProcessInjection.Proc",
        "DefenseEvasion:Runtime/ProcessInjection.Ptrace",
        "DefenseEvasion:Runtime/ProcessInjection.VirtualMemoryWrite",
        "DefenseEvasion:Runtime/PtraceAntiDebugging",
        "DefenseEvasion:Runtime/SuspiciousCommand",
        "Discovery:Runtime/SuspiciousCommand",
        "Execution:Runtime/MaliciousFileExecuted",
        "Execution:Runtime/NewBinaryExecuted",
        "Execution:Runtime/NewLibraryLoaded",
        "Execution:Runtime/ReverseShell",
        "Execution:Runtime/SuspiciousCommand",
        "Execution:Runtime/SuspiciousShellCreated",
        "Execution:Runtime/SuspiciousTool",
        "Impact:Runtime/CryptoMinerExecuted",
        "Persistence:Runtime/SuspiciousCommand",
        "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        "PrivilegeEscalation:Runtime/ContainerMountsHostDirectory",
        "PrivilegeEscalation:Runtime/DockerSocketAccessed",
        "PrivilegeEscalation:Runtime/ElevationToRoot",
        "PrivilegeEscalation:Runtime/RuncContainerEscape",
        "PrivilegeEscalation:Runtime/SuspiciousCommand",
        "PrivilegeEscalation:Runtime/UserfaultfdUsage",
    ),
    # ---------------------------------------------------------------- Malware Protection
    *_entries(
        Answer.NOT_OURS,
        _NO_ADDRESS,
        None,
        "Execution:Container/MaliciousFile",
        "Execution:Container/SuspiciousFile",
        "Execution:EC2/MaliciousFile",
        "Execution:EC2/SuspiciousFile",
        "Execution:ECS/MaliciousFile",
        "Execution:ECS/SuspiciousFile",
        "Execution:Kubernetes/MaliciousFile",
        "Execution:Kubernetes/SuspiciousFile",
        "Object:S3/MaliciousFile",
    ),
    # ---------------------------------------------------------------- attack sequences
    *_entries(
        Answer.NOT_OURS,
        _SEQUENCE,
        None,
        "AttackSequence:EC2/CompromisedInstanceGroup",
        "AttackSequence:ECS/CompromisedCluster",
        "AttackSequence:EKS/CompromisedCluster",
        "AttackSequence:IAM/CompromisedCredentials",
        "AttackSequence:S3/CompromisedData",
    ),
]


def _index(entries: Iterable[Entry]) -> dict[str, Entry]:
    index: dict[str, Entry] = {}
    for entry in entries:
        if entry.finding_type in index:
            raise ValueError(f"finding type {entry.finding_type} is in the catalog twice")
        if (entry.answer is Answer.NOT_OURS) != (entry.kind is None):
            raise ValueError(f"{entry.finding_type}: a blockable type needs an action kind")
        index[entry.finding_type] = entry
    return dict(sorted(index.items()))


ENTRIES: Mapping[str, Entry] = MappingProxyType(_index(_ALL))
# The types whose remote party may be blocked, and where its address lives.
CATALOG: Mapping[str, ActionKind] = MappingProxyType(
    {name: entry.kind for name, entry in ENTRIES.items() if entry.kind is not None}
)
FINDING_TYPES: tuple[str, ...] = tuple(CATALOG)

# EventBridge rejects event patterns longer than this (PutRule EventPattern).
EVENT_PATTERN_MAX_LENGTH = 4096


def entry(finding_type: object) -> Entry | None:
    """The catalog's entry for a type; ``None`` for an unknown type (or a non-string)."""
    return ENTRIES.get(finding_type) if isinstance(finding_type, str) else None


def action_kind(finding_type: object) -> ActionKind | None:
    """Where a blockable type keeps its address; ``None`` for anything else."""
    return CATALOG.get(finding_type) if isinstance(finding_type, str) else None


def finding_types(roles: Iterable[Role]) -> tuple[str, ...]:
    """Blockable types whose remote party can have one of ``roles``, sorted."""
    wanted = frozenset(roles)
    return tuple(name for name, item in ENTRIES.items() if item.roles & wanted)


def event_pattern(min_severity: float, roles: Iterable[Role] = tuple(Role)) -> dict[str, Any]:
    """The EventBridge pattern matching the types a point answering ``roles`` can act on,
    at or above ``min_severity``."""
    if not 0 <= min_severity <= 10:
        raise ValueError(f"GuardDuty severity runs from 0 to 10, got {min_severity}")
    return {
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {
            "type": list(finding_types(roles)),
            "severity": [{"numeric": [">=", min_severity]}],
        },
    }


_ANSWERED_BY = {
    Answer.INBOUND: "WAF IP sets; NACL ingress",
    Answer.OUTBOUND: "NACL egress (when `egress_enabled`)",
    Answer.BY_DIRECTION: "INBOUND: WAF IP sets, NACL ingress; OUTBOUND: NACL egress",
    Answer.NOT_OURS: "not blocked",
}


def markdown() -> str:
    """``docs/finding-catalog.md``: every type, its answer, where it is answered, and why."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# GuardDuty finding types and the blockers",
        "",
        "Generated from `functions/common/finding_catalog.py` (`python main.py docs`); do not "
        "edit by hand. Every published GuardDuty finding type, what its remote party is to "
        "us, where the blockers answer it, and why. The EventBridge rules of `waf_shield` "
        "and `nacl_blocklist` are generated from the same catalog; a type not listed here "
        "is not acted on.",
        "",
        "| Finding type | Remote party | Answered by | Address in | Why |",
        "|---|---|---|---|---|",
    ]
    for name, item in ENTRIES.items():
        where = f"`{item.kind.action_key}`" if item.kind else "-"
        lines.append(
            f"| `{name}` | {item.answer} | {_ANSWERED_BY[item.answer]} | {where} | "
            f"{cell(item.reason)} |"
        )
    counts = {answer: sum(1 for e in ENTRIES.values() if e.answer is answer) for answer in Answer}
    lines += [
        "",
        f"{len(ENTRIES)} types: "
        + ", ".join(f"{count} {answer}" for answer, count in counts.items())
        + ".",
    ]
    return "\n".join(lines) + "\n"
