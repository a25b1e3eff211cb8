"""The isolation steps of the forensics workflow, one function each.

The Step Functions state machine (``functions/forensics/workflow.py``) calls the step
Lambda once per step with ``{"step": <name>, "target": {...}}``; :data:`STEPS` maps the
name to its function here. Every step:

- reads what earlier runs did from tags on the instance (``forensics:<step>``) and its
  record in the evidence bucket, so a re-run after a partial failure finishes what
  remains and repeats nothing (a step already ``done`` or ``skipped`` returns its record
  with ``repeated: true``);
- records itself in that tag and in ``cases/<case>/<instance>/steps/<step>.json``;
- returns a report (``status``, ``actions`` people read, ``details``) that the state
  machine keeps in the execution's history.

Failures raise :class:`StepFailed` (the state machine catches it and, after the security
group swap, restores the original groups) or :class:`EvidencePending` (retried by the state
machine: snapshots still completing before a termination). Evidence objects are written
with an S3 SHA-256 checksum, which also satisfies Object Lock's integrity-header rule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.common import aws, envvars, report, sessions

FUNCTION_NAME = "forensics"
TAG_PREFIX = "forensics:"
CASE_TAG = "forensics:case-id"
FINDING_TAG = "forensics:finding-id"
PROFILE_TAG = "forensics:instance-profile"
COMMANDS_TAG = "forensics:ssm-commands"
TAG_VALUE_LIMIT = 256
ALLOW_ALL_GROUP = "forensics-allow-all"
ISOLATION_GROUP = "forensics-isolation"
CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
SSM_RUNNING = {"Pending", "InProgress", "Delayed"}

# Brute-force findings name our instance as the target (INBOUND) or as the attacker
# (OUTBOUND); only the second is a compromised instance to isolate.
DIRECTIONAL_TYPES = (
    "UnauthorizedAccess:EC2/SSHBruteForce",
    "UnauthorizedAccess:EC2/RDPBruteForce",
)


class StepFailed(Exception):
    """A step could not do its part; the state machine catches it (no retry)."""


class EvidencePending(Exception):
    """Snapshots are still completing; the state machine retries the step later."""


class ConfigError(ValueError):
    """The function's environment is wrong: a deployment bug, not bad input."""


# --------------------------------------------------------------------------- configuration


def _strings(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        strings: tuple[str, ...] = envvars.json_strings(name, raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return strings


@dataclass(frozen=True, slots=True)
class Config:
    evidence_bucket: str
    name_prefix: str = "playbook"
    evidence_key_arn: str = ""
    notify_topic_arn: str = ""
    volatile_document: str = ""
    memory_document: str = ""
    command_timeout_seconds: int = 3600
    copy_snapshots: bool = False
    forensics_subnet_ids: tuple[str, ...] = ()
    forensics_security_group_ids: tuple[str, ...] = ()
    isolate_action_arns: tuple[str, ...] = ()
    terminate_action_arns: tuple[str, ...] = ()
    guardduty_finding_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.evidence_bucket:
            raise ConfigError("EVIDENCE_BUCKET is required")
        if self.forensics_subnet_ids and not self.forensics_security_group_ids:
            raise ConfigError("FORENSICS_SUBNET_IDS needs FORENSICS_SECURITY_GROUP_IDS")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        try:
            timeout = int(env.get("COMMAND_TIMEOUT_SECONDS", "3600"))
        except ValueError:
            raise ConfigError("COMMAND_TIMEOUT_SECONDS must be a whole number") from None
        return cls(
            evidence_bucket=env.get("EVIDENCE_BUCKET", ""),
            name_prefix=env.get("NAME_PREFIX", "playbook"),
            evidence_key_arn=env.get("EVIDENCE_KMS_KEY_ARN", ""),
            notify_topic_arn=env.get("NOTIFY_TOPIC_ARN", ""),
            volatile_document=env.get("VOLATILE_DOCUMENT", ""),
            memory_document=env.get("MEMORY_DOCUMENT", ""),
            command_timeout_seconds=timeout,
            copy_snapshots=env.get("COPY_SNAPSHOTS", "false").lower() == "true",
            forensics_subnet_ids=_strings(env, "FORENSICS_SUBNET_IDS"),
            forensics_security_group_ids=_strings(env, "FORENSICS_SECURITY_GROUP_IDS"),
            isolate_action_arns=_strings(env, "ISOLATE_ACTION_ARNS"),
            terminate_action_arns=_strings(env, "TERMINATE_ACTION_ARNS"),
            guardduty_finding_types=_strings(env, "GUARDDUTY_FINDING_TYPES"),
        )


Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- normalise


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to isolate (or terminate), as the first step normalised it."""

    action: str  # "isolate" or "terminate"
    instance_id: str
    case_id: str
    finding_id: str
    finding_type: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "action": self.action,
            "instanceId": self.instance_id,
            "caseId": self.case_id,
            "findingId": self.finding_id,
            "findingType": self.finding_type,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Target:
        if not isinstance(raw, dict):
            raise StepFailed(f"target must be an object, got {type(raw).__name__}")
        action, instance = raw.get("action"), raw.get("instanceId")
        if action not in ("isolate", "terminate"):
            raise StepFailed(f"target.action must be isolate or terminate, got {action!r}")
        if not isinstance(instance, str) or not INSTANCE_ID.fullmatch(instance):
            raise StepFailed(f"target.instanceId is not an instance id: {instance!r}")
        case = raw.get("caseId")
        if not isinstance(case, str) or not CASE_ID.fullmatch(case):
            raise StepFailed(f"target.caseId is not a case id: {case!r}")
        return cls(
            action=action,
            instance_id=instance,
            case_id=case,
            finding_id=str(raw.get("findingId") or "")[:300],
            finding_type=str(raw.get("findingType") or "")[:300],
            reason=str(raw.get("reason") or "")[:256],
        )


def derived_case_id(finding_id: str, instance_id: str) -> str:
    """The same finding about the same instance always opens the same case."""
    digest = hashlib.sha256(f"{finding_id}|{instance_id}".encode()).hexdigest()
    return f"case-{digest[:16]}"


def _rejected(reason: str) -> dict[str, Any]:
    return {"status": "rejected", "reason": reason, "targets": []}


def _accepted(targets: Sequence[Target]) -> dict[str, Any]:
    unique = {t.instance_id: t for t in targets}
    return {"status": "accepted", "targets": [t.as_dict() for t in unique.values()]}


def normalise(event: Any, config: Config) -> dict[str, Any]:
    """Turn whatever started the execution into targets, or a rejection with its reason.

    Accepted: a GuardDuty finding (``source`` ``aws.guardduty``) of a configured type
    where our instance is the actor; a Security Hub custom action (``source``
    ``aws.securityhub``) whose ARN is one of the configured Isolate / Terminate actions;
    an operator's ``{"action", "instanceId" | "instanceIds", "caseId"?, "reason"?}``.
    An event whose ``source`` is not the service its ``detail-type`` names is spoofed.
    """
    if not isinstance(event, dict):
        return _rejected(f"expected a JSON object, got {type(event).__name__}")
    detail_type = event.get("detail-type")
    if detail_type is None and "source" not in event:
        return _operator_request(event)
    source = event.get("source")
    if detail_type == "GuardDuty Finding":
        if source != "aws.guardduty":
            return _rejected(f"spoofed event: GuardDuty Finding from source {source!r}")
        return _guardduty(event.get("detail"), config)
    if detail_type == "Security Hub Findings - Custom Action":
        if source != "aws.securityhub":
            return _rejected(f"spoofed event: Security Hub custom action from source {source!r}")
        return _security_hub(event, config)
    return _rejected(f"unrecognised event (detail-type {str(detail_type)[:80]!r})")


def _operator_request(event: dict[str, Any]) -> dict[str, Any]:
    action = event.get("action")
    if action not in ("isolate", "terminate"):
        return _rejected(f"action must be isolate or terminate, got {str(action)[:40]!r}")
    instances = event.get("instanceIds", [event.get("instanceId")])
    if not isinstance(instances, list) or not instances or len(instances) > 20:
        return _rejected("instanceIds must list 1 to 20 instance ids")
    for instance in instances:
        if not isinstance(instance, str) or not INSTANCE_ID.fullmatch(instance):
            return _rejected(f"not an instance id: {str(instance)[:40]!r}")
    case = event.get("caseId")
    if case is not None and (not isinstance(case, str) or not CASE_ID.fullmatch(case)):
        return _rejected("caseId must be 1-64 letters, digits, '.', '_' or '-'")
    reason = event.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return _rejected("reason is required: say why the instance is isolated")
    finding = str(event.get("findingId") or "manual")[:300]
    return _accepted(
        [
            Target(
                action=action,
                instance_id=instance,
                case_id=case or derived_case_id(finding, instance),
                finding_id=finding,
                reason=reason.strip()[:256],
            )
            for instance in instances
        ]
    )


def _guardduty(detail: Any, config: Config) -> dict[str, Any]:
    if not isinstance(detail, dict):
        return _rejected("GuardDuty finding without a detail object")
    finding_id, finding_type = detail.get("id"), detail.get("type")
    if not isinstance(finding_id, str) or not isinstance(finding_type, str):
        return _rejected("GuardDuty finding without id or type")
    if not any(finding_type.startswith(prefix) for prefix in config.guardduty_finding_types):
        return _rejected(f"finding type {finding_type} is not one the workflow isolates for")
    resource = detail.get("resource") or {}
    instance = (resource.get("instanceDetails") or {}).get("instanceId")
    if resource.get("resourceType") != "Instance" or not isinstance(instance, str):
        return _rejected(f"{finding_type} does not name an EC2 instance")
    if not INSTANCE_ID.fullmatch(instance):
        return _rejected(f"not an instance id: {instance[:40]!r}")
    if finding_type.split("!")[0] in DIRECTIONAL_TYPES:
        action = (detail.get("service") or {}).get("action") or {}
        direction = (action.get("networkConnectionAction") or {}).get("connectionDirection")
        if direction != "OUTBOUND":
            return _rejected(
                f"{finding_type} with direction {direction}: our instance is the target, "
                "not the actor"
            )
    return _accepted(
        [
            Target(
                action="isolate",
                instance_id=instance,
                case_id=derived_case_id(finding_id, instance),
                finding_id=finding_id,
                finding_type=finding_type,
                reason=f"GuardDuty {finding_type} (severity {detail.get('severity')})",
            )
        ]
    )


def _security_hub(event: dict[str, Any], config: Config) -> dict[str, Any]:
    resources = event.get("resources") or []
    action_arn = resources[0] if isinstance(resources, list) and resources else None
    if action_arn in config.isolate_action_arns:
        action = "isolate"
    elif action_arn in config.terminate_action_arns:
        action = "terminate"
    else:
        return _rejected(f"custom action {str(action_arn)[:200]!r} is not Isolate or Terminate")
    detail = event.get("detail") or {}
    findings = detail.get("findings") if isinstance(detail, dict) else None
    if not isinstance(findings, list) or not findings:
        return _rejected("custom action event without findings")
    who = (detail.get("actionName") or "custom action") if isinstance(detail, dict) else ""
    targets = []
    for finding in findings:
        if not isinstance(finding, dict) or not isinstance(finding.get("Id"), str):
            continue
        for resource in finding.get("Resources") or []:
            if not isinstance(resource, dict) or resource.get("Type") != "AwsEc2Instance":
                continue
            instance = str(resource.get("Id", "")).rsplit("/", 1)[-1]
            if INSTANCE_ID.fullmatch(instance):
                targets.append(
                    Target(
                        action=action,
                        instance_id=instance,
                        case_id=derived_case_id(finding["Id"], instance),
                        finding_id=finding["Id"][:300],
                        finding_type=", ".join(finding.get("Types") or [])[:300],
                        reason=f"Security Hub {who}: {str(finding.get('Title', ''))[:180]}",
                    )
                )
    if not targets:
        return _rejected("none of the selected findings names an EC2 instance")
    return _accepted(targets)


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """One instance under isolation: its description, its tags, its evidence prefix."""

    target: Target
    config: Config
    now: Now
    instance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, target: Target, config: Config, now: Now) -> Case:
        case = cls(target, config, now)
        case.refresh()
        return case

    def refresh(self) -> None:
        try:
            reservations = aws.client("ec2").describe_instances(
                InstanceIds=[self.target.instance_id]
            )["Reservations"]
        except Exception as exc:
            if aws.error_code(exc) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                raise StepFailed(f"instance {self.target.instance_id} does not exist") from None
            raise
        instances = [i for r in reservations for i in r["Instances"]]
        if not instances:
            raise StepFailed(f"instance {self.target.instance_id} does not exist")
        self.instance = instances[0]

    @property
    def instance_id(self) -> str:
        return self.target.instance_id

    @property
    def tags(self) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.instance.get("Tags", [])}

    @property
    def case_id(self) -> str:
        """An instance already under a case stays in it, whatever started this run."""
        return self.tags.get(CASE_TAG) or self.target.case_id

    @property
    def prefix(self) -> str:
        return f"cases/{self.case_id}/{self.instance_id}"

    @property
    def state(self) -> str:
        return str(self.instance.get("State", {}).get("Name", ""))

    def tag(self, **values: str) -> None:
        tags = [{"Key": k, "Value": v[:TAG_VALUE_LIMIT]} for k, v in values.items()]
        aws.client("ec2").create_tags(Resources=[self.instance_id], Tags=tags)
        current = self.tags
        current.update({t["Key"]: t["Value"] for t in tags})
        self.instance["Tags"] = [{"Key": k, "Value": v} for k, v in current.items()]

    # Evidence ---------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put(self, name: str, body: bytes, content_type: str = "application/json") -> dict[str, str]:
        """Write an evidence object; returns its key and sha256 (hex)."""
        digest = hashlib.sha256(body)
        arguments: dict[str, Any] = {
            "Bucket": self.config.evidence_bucket,
            "Key": self.key(name),
            "Body": body,
            "ContentType": content_type,
            # botocore sends the SHA-256 checksum with x-amz-sdk-checksum-algorithm, the
            # integrity header Object Lock requires; S3 checks it on arrival and keeps it
            # with the object for later verification.
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {"sha256": digest.hexdigest(), "case-id": self.case_id},
        }
        if self.config.evidence_key_arn:
            arguments |= {
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": self.config.evidence_key_arn,
            }
        aws.client("s3").put_object(**arguments)
        return {"key": self.key(name), "sha256": digest.hexdigest()}

    def put_json(self, name: str, value: Any) -> dict[str, str]:
        text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
        return self.put(name, text.encode())

    def read_json(self, name: str) -> Any | None:
        try:
            body = (
                aws.client("s3")
                .get_object(Bucket=self.config.evidence_bucket, Key=self.key(name))["Body"]
                .read()
            )
        except Exception as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def stored_sha256(self, key: str) -> str | None:
        """The sha256 (hex) S3 holds for ``key``; None when the object is absent."""
        try:
            head = aws.client("s3").head_object(
                Bucket=self.config.evidence_bucket, Key=key, ChecksumMode="ENABLED"
            )
        except Exception as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum:  # multipart uploads hold a checksum of parts
            return binascii.hexlify(base64.b64decode(checksum)).decode()
        return str(head.get("Metadata", {}).get("sha256", "")) or None


# --------------------------------------------------------------------------- step plumbing


def _result(step: str, status: str, actions: list[str], **details: Any) -> dict[str, Any]:
    return {"step": step, "status": status, "actions": actions, "details": details}


StepBody = Callable[[Case], dict[str, Any]]


def run_step(
    name: str, payload: Mapping[str, Any], config: Config, now: Now, body: StepBody
) -> dict[str, Any]:
    """Open the case, skip the step if an earlier run finished it, else run and record it."""
    target = Target.from_dict(payload.get("target"))
    case = Case.open(target, config, now)
    recorded = case.tags.get(f"{TAG_PREFIX}{name}", "")
    if recorded.startswith(("done", "skipped")):
        previous = case.read_json(f"steps/{name}.json") or _result(name, recorded.split()[0], [])
        return {**previous, "repeated": True, "instanceId": case.instance_id}
    result = body(case)
    result |= {"instanceId": case.instance_id, "caseId": case.case_id, "at": iso(now())}
    if result["status"] == "skipped" and not result["actions"]:
        result["actions"] = [f"skipped: {result['details'].get('reason', '')}"]
    if result["status"] in ("done", "skipped"):
        case.put_json(f"steps/{name}.json", result)
    summary = result["status"]
    if result["status"] == "skipped":
        summary += f" {result['details'].get('reason', '')}"
    case.tag(**{f"{TAG_PREFIX}{name}": f"{summary} {result['at']}".strip()})
    return {**result, "repeated": False}


# --------------------------------------------------------------------------- 1. protect


def protect(case: Case) -> dict[str, Any]:
    """Tag the case, turn on termination and stop protection, keep the volumes."""
    ec2 = aws.client("ec2")
    actions = []
    if CASE_TAG not in case.tags:
        case.tag(**{CASE_TAG: case.case_id, FINDING_TAG: case.target.finding_id or "manual"})
        actions.append(f"tagged {case.instance_id} with case {case.case_id}")
    if case.read_json("instance.json") is None:
        stored = case.put_json("instance.json", case.instance)
        actions.append(f"kept the instance description as {stored['key']}")
    for attribute in ("DisableApiTermination", "DisableApiStop"):
        ec2.modify_instance_attribute(InstanceId=case.instance_id, **{attribute: {"Value": True}})
    actions.append("termination and stop protection on")
    kept = []
    for mapping in case.instance.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        if ebs and ebs.get("DeleteOnTermination"):
            ec2.modify_instance_attribute(
                InstanceId=case.instance_id,
                BlockDeviceMappings=[
                    {"DeviceName": mapping["DeviceName"], "Ebs": {"DeleteOnTermination": False}}
                ],
            )
            kept.append(ebs["VolumeId"])
    if kept:
        actions.append(f"DeleteOnTermination false on {', '.join(kept)}")
    return _result("protect", "done", actions, volumesKept=kept)


# --------------------------------------------------------------------------- 2. contain


def contain(case: Case) -> dict[str, Any]:
    """Out of its Auto Scaling group (a healthy replacement comes up) and every target group."""
    actions: list[str] = []
    autoscaling = aws.client("autoscaling")
    groups = autoscaling.describe_auto_scaling_instances(InstanceIds=[case.instance_id])
    detached = []
    for member in groups.get("AutoScalingInstances", []):
        if member.get("LifecycleState", "").startswith("Detach"):
            continue
        autoscaling.detach_instances(
            InstanceIds=[case.instance_id],
            AutoScalingGroupName=member["AutoScalingGroupName"],
            ShouldDecrementDesiredCapacity=False,
        )
        detached.append(member["AutoScalingGroupName"])
        actions.append(
            f"detached from Auto Scaling group {member['AutoScalingGroupName']} "
            "(desired capacity kept: a replacement launches)"
        )
    addresses = {
        address["PrivateIpAddress"]
        for interface in case.instance.get("NetworkInterfaces", [])
        for address in interface.get("PrivateIpAddresses", [])
    }
    elbv2 = aws.client("elbv2")
    deregistered = []
    for page in elbv2.get_paginator("describe_target_groups").paginate():
        for group in page["TargetGroups"]:
            kind = group.get("TargetType", "instance")
            if kind not in ("instance", "ip"):
                continue
            health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            ours = [
                {k: v for k, v in d["Target"].items() if k in ("Id", "Port", "AvailabilityZone")}
                for d in health["TargetHealthDescriptions"]
                if d["Target"]["Id"] == case.instance_id
                or (kind == "ip" and d["Target"]["Id"] in addresses)
            ]
            if ours:
                elbv2.deregister_targets(TargetGroupArn=group["TargetGroupArn"], Targets=ours)
                deregistered.append(group["TargetGroupArn"])
                actions.append(f"deregistered from target group {group['TargetGroupName']}")
    if not actions:
        actions.append("in no Auto Scaling group or target group")
    return _result(
        "contain", "done", actions, autoScalingGroups=detached, targetGroups=deregistered
    )


# --------------------------------------------------------------------------- 3. volatile evidence


def _ssm_managed(instance_id: str) -> str | None:
    """None when SSM can run commands on the instance, else why not."""
    response = aws.client("ssm").describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )
    found = response.get("InstanceInformationList", [])
    if not found:
        return "not managed by SSM (no agent, no instance profile, or not registered)"
    if found[0].get("PingStatus") != "Online":
        return f"SSM agent is {found[0].get('PingStatus')}"
    return None


def parse_artefact_lines(stdout: str) -> list[dict[str, Any]]:
    """The lines the evidence documents print, one JSON object per artefact."""
    artefacts = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            artefacts.append(item)
    return artefacts


def capture_volatile(case: Case) -> dict[str, Any]:
    """Run the evidence documents through SSM; ``pending`` until they finish."""
    documents = [d for d in (case.config.volatile_document, case.config.memory_document) if d]
    if not documents:
        return _result("capture_volatile", "skipped", [], reason="no evidence documents configured")
    if case.state != "running":
        return _result("capture_volatile", "skipped", [], reason=f"instance is {case.state}")
    ssm = aws.client("ssm")
    sent = case.tags.get(COMMANDS_TAG, "").split()
    if not sent:
        unmanaged = _ssm_managed(case.instance_id)
        if unmanaged:
            return _result(
                "capture_volatile",
                "skipped",
                [f"volatile evidence skipped: {unmanaged}"],
                reason=unmanaged,
            )
        for document in documents:
            command = ssm.send_command(
                InstanceIds=[case.instance_id],
                DocumentName=document,
                Comment=f"forensics {case.case_id}"[:100],
                TimeoutSeconds=case.config.command_timeout_seconds,
                Parameters={
                    "Bucket": [case.config.evidence_bucket],
                    "Prefix": [f"{case.prefix}/volatile"],
                    "KmsKeyArn": [case.config.evidence_key_arn],
                },
            )["Command"]
            sent.append(command["CommandId"])
        case.tag(**{COMMANDS_TAG: " ".join(sent)})
    artefacts: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for command_id in sent:
        try:
            invocation = ssm.get_command_invocation(
                CommandId=command_id, InstanceId=case.instance_id
            )
        except Exception as exc:
            if aws.error_code(exc) == "InvocationDoesNotExist":  # not visible yet
                return _result("capture_volatile", "pending", [], commands=sent)
            raise
        status = invocation["Status"]
        if status in SSM_RUNNING:
            return _result("capture_volatile", "pending", [], commands=sent)
        reported = parse_artefact_lines(invocation.get("StandardOutputContent", ""))
        if status != "Success" and not reported:
            skipped.append({"name": command_id, "reason": f"SSM command {status}"})
        for item in reported:
            if "skipped" in item:
                skipped.append({"name": item["name"], "reason": str(item["skipped"])})
                continue
            stored = case.stored_sha256(str(item.get("key", "")))
            if stored is None:
                skipped.append({"name": item["name"], "reason": "not found in the evidence bucket"})
            elif stored != item.get("sha256"):
                skipped.append(
                    {"name": item["name"], "reason": f"sha256 mismatch: bucket has {stored}"}
                )
            else:
                artefacts.append(
                    {
                        "name": item["name"],
                        "key": item["key"],
                        "sha256": stored,
                        "bytes": item.get("bytes"),
                    }
                )
    actions = [f"kept {a['name']} ({a['key']}, sha256 {a['sha256'][:12]}...)" for a in artefacts]
    actions += [f"no {s['name']}: {s['reason']}" for s in skipped]
    return _result(
        "capture_volatile", "done", actions, commands=sent, artefacts=artefacts, skipped=skipped
    )


# --------------------------------------------------------------------------- 4. snapshots


def _volumes(case: Case) -> dict[str, str]:
    return {
        m["Ebs"]["VolumeId"]: m["DeviceName"]
        for m in case.instance.get("BlockDeviceMappings", [])
        if "Ebs" in m
    }


def _case_snapshots(case: Case) -> list[dict[str, Any]]:
    response = aws.client("ec2").describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{CASE_TAG}", "Values": [case.case_id]}]
    )
    ours: list[dict[str, Any]] = [
        s
        for s in response["Snapshots"]
        if {"Key": "forensics:instance-id", "Value": case.instance_id} in s.get("Tags", [])
    ]
    return ours


def _snapshot_tags(case: Case, volume: str, **extra: str) -> list[dict[str, Any]]:
    tags = {
        "Name": f"forensics {case.case_id} {volume}",
        CASE_TAG: case.case_id,
        FINDING_TAG: case.target.finding_id or "manual",
        "forensics:instance-id": case.instance_id,
        "forensics:volume-id": volume,
        **extra,
    }
    return [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def snapshot(case: Case) -> dict[str, Any]:
    """A point-in-time snapshot of every attached volume, tagged with the case."""
    existing = {
        _tag(s, "forensics:volume-id"): s
        for s in _case_snapshots(case)
        if _tag(s, "forensics:copy-of") is None
    }
    actions = []
    snapshots = {}
    for volume, device in sorted(_volumes(case).items()):
        found = existing.get(volume)
        if found is None:
            found = aws.client("ec2").create_snapshot(
                VolumeId=volume,
                Description=f"forensics {case.case_id} {case.instance_id} {device}",
                TagSpecifications=_snapshot_tags(case, volume),
            )
            actions.append(f"snapshot {found['SnapshotId']} of {volume} ({device})")
        snapshots[volume] = found["SnapshotId"]
    if not snapshots:
        return _result("snapshot", "skipped", [], reason="no EBS volume attached")
    return _result("snapshot", "done", actions, snapshots=snapshots)


def copy_snapshots(case: Case) -> dict[str, Any]:
    """Copies of the case's snapshots encrypted with the evidence key (when asked).

    EBS copies only completed snapshots, so this runs after the network isolation and
    answers ``pending`` until every source has completed and been copied.
    """
    if not case.config.copy_snapshots or not case.config.evidence_key_arn:
        return _result("copy_snapshots", "skipped", [], reason="copies not asked for")
    snapshots = _case_snapshots(case)
    copies = {_tag(s, "forensics:copy-of"): s for s in snapshots if _tag(s, "forensics:copy-of")}
    sources = [s for s in snapshots if _tag(s, "forensics:copy-of") is None]
    actions, pending, copied = [], False, {}
    for source in sources:
        copy = copies.get(source["SnapshotId"])
        if copy is None:
            if source["State"] != "completed":
                pending = True
                continue
            volume = _tag(source, "forensics:volume-id") or source.get("VolumeId", "")
            copy = aws.client("ec2").copy_snapshot(
                SourceSnapshotId=source["SnapshotId"],
                SourceRegion=aws.client("ec2").meta.region_name,
                Encrypted=True,
                KmsKeyId=case.config.evidence_key_arn,
                Description=f"forensics {case.case_id} copy of {source['SnapshotId']}",
                TagSpecifications=_snapshot_tags(
                    case, volume, **{"forensics:copy-of": source["SnapshotId"]}
                ),
            )
            actions.append(f"copy {copy['SnapshotId']} of {source['SnapshotId']} (evidence key)")
        copied[source["SnapshotId"]] = copy["SnapshotId"]
    if pending:
        return _result("copy_snapshots", "pending", actions, copies=copied)
    return _result("copy_snapshots", "done", actions, copies=copied)


# --------------------------------------------------------------------------- 5. credentials


def revoke_credentials(case: Case) -> dict[str, Any]:
    """Disassociate the instance profile, then revoke its roles' sessions issued before now."""
    ec2, actions = aws.client("ec2"), []
    associations = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [case.instance_id]}]
    )["IamInstanceProfileAssociations"]
    current = [a for a in associations if a["State"] in ("associating", "associated")]
    profile_arn = case.tags.get(PROFILE_TAG) or (
        current[0]["IamInstanceProfile"]["Arn"] if current else ""
    )
    if not profile_arn:
        return _result("revoke_credentials", "skipped", [], reason="no instance profile")
    # Recorded before it is cut, so a re-run still knows whose sessions to revoke.
    case.tag(**{PROFILE_TAG: profile_arn})
    for association in current:
        ec2.disassociate_iam_instance_profile(AssociationId=association["AssociationId"])
        actions.append(f"disassociated instance profile {profile_arn}")
    profile_name = profile_arn.rsplit("/", 1)[-1]
    try:
        roles = aws.client("iam").get_instance_profile(InstanceProfileName=profile_name)[
            "InstanceProfile"
        ]["Roles"]
    except Exception as exc:
        if aws.error_code(exc) != "NoSuchEntity":
            raise
        roles = []
        actions.append(f"instance profile {profile_name} no longer exists; no role to revoke")
    revoked, refused = [], []
    for role in roles:
        try:
            revocation = sessions.revoke_older_sessions(role["RoleName"], case.now())
        except Exception as exc:
            # A role outside the module's instance_role_arns: say so loudly, and go on to
            # cut the network (the profile is already gone, so no new credentials come).
            if aws.error_code(exc) not in ("AccessDenied", "AccessDeniedException"):
                raise
            refused.append(role["RoleName"])
            actions.append(
                f"NOT revoked: sessions of role {role['RoleName']} (access denied: the role "
                "is outside instance_role_arns); revoke them by hand"
            )
            continue
        revoked.append({"role": role["RoleName"], "before": revocation.cutoff})
        actions.append(
            f"revoked sessions of role {role['RoleName']} issued before {revocation.cutoff} "
            f"(inline policy {sessions.POLICY_NAME})"
        )
    return _result(
        "revoke_credentials",
        "done",
        actions,
        instanceProfile=profile_arn,
        revoked=revoked,
        notRevoked=refused,
    )


# --------------------------------------------------------------------------- 6. network


def _group_name(config: Config, purpose: str) -> str:
    return f"{config.name_prefix}-{purpose}"


def ensure_group(vpc_id: str, config: Config, purpose: str) -> str:
    """The VPC's allow-all or isolation group, created when missing (race-safe)."""
    ec2 = aws.client("ec2")
    name = _group_name(config, purpose)
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    found = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    description = {
        ALLOW_ALL_GROUP: "Forensics: allows all traffic so tracked connections become untracked",
        ISOLATION_GROUP: "Forensics: no rules; isolates an instance under investigation",
    }[purpose]
    try:
        group_id = ec2.create_security_group(
            GroupName=name,
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": [
                        {"Key": "Name", "Value": name},
                        {"Key": "ManagedBy", "Value": "playbook-as-code"},
                    ],
                }
            ],
        )["GroupId"]
    except Exception as exc:
        if aws.error_code(exc) != "InvalidGroup.Duplicate":
            raise
        return str(ec2.describe_security_groups(Filters=filters)["SecurityGroups"][0]["GroupId"])
    everywhere = [
        {
            "IpProtocol": "-1",
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
        }
    ]
    if purpose == ALLOW_ALL_GROUP:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=everywhere)
        ec2.authorize_security_group_egress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}],
        )
    else:
        # A new group allows all IPv4 egress; an isolation group allows nothing.
        ec2.revoke_security_group_egress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )
    return str(group_id)


def _interfaces(case: Case) -> dict[str, list[str]]:
    """The instance's own ENIs (not the forensics one) and their groups."""
    return {
        eni["NetworkInterfaceId"]: sorted(g["GroupId"] for g in eni.get("Groups", []))
        for eni in case.instance.get("NetworkInterfaces", [])
        if _tag(eni, CASE_TAG) is None
        and "forensics" not in str(eni.get("Description", "")).lower()
    }


def _original_groups(case: Case, ours: set[str]) -> dict[str, list[str]]:
    """Each ENI's groups before isolation, kept in the evidence bucket before any change."""
    recorded = case.read_json("original-security-groups.json")
    if recorded is not None:
        return dict(recorded)
    current = _interfaces(case)
    if any(set(groups) & ours for groups in current.values()):
        raise StepFailed("an ENI already has the isolation groups but no original groups record")
    case.put_json("original-security-groups.json", current)
    return current


def isolate_network(case: Case) -> dict[str, Any]:
    """Allow-all first (tracked connections become untracked), then the isolation group."""
    vpc = case.instance.get("VpcId")
    if not vpc:
        raise StepFailed(f"{case.instance_id} is not in a VPC")
    allow_all = ensure_group(vpc, case.config, ALLOW_ALL_GROUP)
    isolation = ensure_group(vpc, case.config, ISOLATION_GROUP)
    originals = _original_groups(case, {allow_all, isolation})
    ec2, actions = aws.client("ec2"), []
    for eni, groups in sorted(_interfaces(case).items()):
        if groups == [isolation]:
            continue
        for step_groups in ([allow_all], [isolation]):
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=step_groups)
        actions.append(
            f"{eni}: {', '.join(originals.get(eni, groups))} -> allow-all {allow_all} -> "
            f"isolation {isolation}"
        )
    forensic = _forensics_interface(case, isolation)
    if forensic:
        actions.append(forensic)
    return _result(
        "isolate_network",
        "done",
        actions,
        allowAllGroup=allow_all,
        isolationGroup=isolation,
        originalGroups=originals,
    )


def _forensics_interface(case: Case, isolation: str) -> str:
    """Attach an ENI for investigators in the forensics subnet of the instance's AZ."""
    if not case.config.forensics_subnet_ids:
        return ""
    ec2 = aws.client("ec2")
    attached = [eni for eni in case.instance.get("NetworkInterfaces", []) if _tag(eni, CASE_TAG)]
    if attached:
        return ""
    zone = case.instance.get("Placement", {}).get("AvailabilityZone")
    subnets = ec2.describe_subnets(SubnetIds=list(case.config.forensics_subnet_ids))["Subnets"]
    subnet = next((s for s in subnets if s["AvailabilityZone"] == zone), None)
    if subnet is None:
        return f"no forensics interface: no forensics subnet in {zone}"
    interface = ec2.create_network_interface(
        SubnetId=subnet["SubnetId"],
        Groups=list(case.config.forensics_security_group_ids),
        Description=f"forensics {case.case_id} investigators' interface",
        TagSpecifications=[
            {
                "ResourceType": "network-interface",
                "Tags": [
                    {"Key": CASE_TAG, "Value": case.case_id},
                    {"Key": "forensics:instance-id", "Value": case.instance_id},
                ],
            }
        ],
    )["NetworkInterface"]
    index = 1 + max(
        (e["Attachment"]["DeviceIndex"] for e in case.instance.get("NetworkInterfaces", [])),
        default=0,
    )
    try:
        ec2.attach_network_interface(
            NetworkInterfaceId=interface["NetworkInterfaceId"],
            InstanceId=case.instance_id,
            DeviceIndex=index,
        )
    except Exception as exc:
        if aws.error_code(exc) != "AttachmentLimitExceeded":
            raise
        return f"forensics interface {interface['NetworkInterfaceId']} not attached: ENI limit"
    return (
        f"attached forensics interface {interface['NetworkInterfaceId']} in {subnet['SubnetId']} "
        f"(groups {', '.join(case.config.forensics_security_group_ids)})"
    )


def restore_security_groups(case: Case) -> dict[str, Any]:
    """Roll back a failed swap: every ENI gets its original groups again."""
    originals = case.read_json("original-security-groups.json")
    if not originals:
        return _result("restore_security_groups", "skipped", [], reason="no swap was recorded")
    ec2, actions = aws.client("ec2"), []
    current = _interfaces(case)
    for eni, groups in sorted(originals.items()):
        if eni in current and current[eni] != sorted(groups):
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=groups)
            actions.append(f"{eni}: original groups {', '.join(groups)} restored")
    # The swap is no longer done: a re-run must try it again.
    case.tag(**{f"{TAG_PREFIX}isolate_network": f"rolled-back {iso(case.now())}"})
    return _result("restore_security_groups", "done", actions, restored=originals)


# --------------------------------------------------------------------------- terminate


def terminate(case: Case) -> dict[str, Any]:
    """Terminate only once every volume has a completed snapshot and the evidence is kept."""
    if case.state in ("shutting-down", "terminated"):
        return _result("terminate", "done", [f"instance already {case.state}"])
    reasons = []
    snapshots = {
        _tag(s, "forensics:volume-id"): s
        for s in _case_snapshots(case)
        if _tag(s, "forensics:copy-of") is None
    }
    pending = []
    for volume in sorted(_volumes(case)):
        found = snapshots.get(volume)
        if found is None:
            reasons.append(f"no snapshot of {volume}")
        elif found["State"] == "error":
            reasons.append(f"snapshot {found['SnapshotId']} of {volume} failed")
        elif found["State"] != "completed":
            pending.append(found["SnapshotId"])
    if case.stored_sha256(case.key("instance.json")) is None:
        reasons.append("the instance description is not in the evidence bucket")
    volatile = case.read_json("steps/capture_volatile.json")
    if volatile is None:
        reasons.append("volatile evidence was neither captured nor skipped with a reason")
    else:
        for artefact in volatile["details"].get("artefacts", []):
            if case.stored_sha256(artefact["key"]) != artefact["sha256"]:
                reasons.append(f"evidence {artefact['key']} is missing or changed")
    if reasons:
        return _result(
            "terminate",
            "refused",
            [f"termination refused: {'; '.join(reasons)}"],
            reason="; ".join(reasons),
        )
    if pending:
        raise EvidencePending(f"snapshots still completing: {', '.join(pending)}")
    ec2 = aws.client("ec2")
    ec2.modify_instance_attribute(
        InstanceId=case.instance_id, DisableApiTermination={"Value": False}
    )
    ec2.terminate_instances(InstanceIds=[case.instance_id])
    return _result(
        "terminate",
        "done",
        [f"terminated {case.instance_id} (snapshots completed, evidence kept; volumes kept)"],
    )


# --------------------------------------------------------------------------- 7. report

ORDER = (
    "protect",
    "contain",
    "capture_volatile",
    "snapshot",
    "revoke_credentials",
    "isolate_network",
    "copy_snapshots",
    "terminate",
)


def build_report(case: Case, error: Mapping[str, Any] | None) -> dict[str, Any]:
    tags = case.tags
    steps = []
    for name in ORDER:
        record = case.read_json(f"steps/{name}.json") if tags.get(f"{TAG_PREFIX}{name}") else None
        steps.append(
            {
                "step": name,
                "tag": tags.get(f"{TAG_PREFIX}{name}", "not run"),
                "actions": (record or {}).get("actions", []),
            }
        )
    return {
        "caseId": case.case_id,
        "instanceId": case.instance_id,
        "findingId": tags.get(FINDING_TAG, case.target.finding_id),
        "action": case.target.action,
        "reason": case.target.reason,
        "steps": steps,
        "error": dict(error) if error else None,
        "evidence": f"s3://{case.config.evidence_bucket}/{case.prefix}/",
    }


def notify(case: Case, payload: Mapping[str, Any]) -> dict[str, Any]:
    error = payload.get("error")
    summary = build_report(case, error if isinstance(error, Mapping) else None)
    stored = case.put_json("report.json", summary)
    refused = case.tags.get(f"{TAG_PREFIX}terminate", "").startswith("refused")
    if error:
        title = f"Isolation of {case.instance_id} failed ({case.case_id})"
        severity = "HIGH"
    elif refused:
        title = f"{case.instance_id} isolated; termination refused ({case.case_id})"
        severity = "HIGH"
    else:
        verb = "terminated" if case.target.action == "terminate" else "isolated"
        title = f"{case.instance_id} {verb} ({case.case_id})"
        severity = "MEDIUM"
    published = ""
    if report.wanted(case.config.notify_topic_arn):
        lines = [f"{s['step']}: {s['tag']}" for s in summary["steps"]]
        # What a step could not do must not hide behind its "done".
        lines += [a for s in summary["steps"] for a in s["actions"] if a.startswith("NOT ")]
        if error:
            lines.append(f"error: {error.get('Error')}: {str(error.get('Cause'))[:300]}")
        message = report.remediation_report(
            function=FUNCTION_NAME,
            title=title,
            severity=severity,
            summary=f"Evidence in {summary['evidence']}. {case.target.reason}".strip(),
            actions=lines,
            account=next(
                (str(e.get("OwnerId", "")) for e in case.instance.get("NetworkInterfaces", [])), ""
            ),
            region=aws.client("ec2").meta.region_name,
            resources=[case.instance_id],
            finding_id=summary["findingId"],
            now=case.now(),
        )
        published = report.publish(case.config.notify_topic_arn, message)
    return {
        "step": "report",
        "status": "done",
        "title": title,
        "report": summary,
        "reportKey": stored["key"],
        "messageId": published,
    }


# --------------------------------------------------------------------------- dispatch

ISOLATION_STEPS: dict[str, StepBody] = {
    "protect": protect,
    "contain": contain,
    "capture_volatile": capture_volatile,
    "snapshot": snapshot,
    "revoke_credentials": revoke_credentials,
    "isolate_network": isolate_network,
    "copy_snapshots": copy_snapshots,
    "terminate": terminate,
}
STEP_NAMES = ("normalise", *ISOLATION_STEPS, "restore_security_groups", "report")


def run(payload: Mapping[str, Any], config: Config, now: Now = system_now) -> dict[str, Any]:
    """Run the step ``payload["step"]`` names."""
    step = payload.get("step")
    if step == "normalise":
        return normalise(payload.get("event"), config)
    if step in ISOLATION_STEPS:
        return run_step(str(step), payload, config, now, ISOLATION_STEPS[str(step)])
    target = Target.from_dict(payload.get("target"))
    case = Case.open(target, config, now)
    if step == "restore_security_groups":
        return {**restore_security_groups(case), "instanceId": case.instance_id}
    if step == "report":
        return notify(case, payload)
    raise StepFailed(f"unknown step {str(step)[:40]!r}; expected one of {', '.join(STEP_NAMES)}")
