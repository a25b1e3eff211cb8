"""Fix what AWS Config found NON_COMPLIANT, where a fix is safe, and say what was done.

One action per catalog rule with a safe fix (``modules/config_rules_catalog.py``):

- ``revoke_open_admin_ports``: the security group's ingress from 0.0.0.0/0 and ::/0 that
  reaches TCP 22 or 3389 is revoked; a range that also opens other ports (22-25, say) is
  re-opened to the world without 22 and 3389 first, so nothing else of the group changes.
  An all-protocols rule open to the world is left alone and reported: splitting it would
  close protocols other than TCP.
- ``block_s3_public_access``: the bucket's four Block Public Access settings on.
- ``enable_s3_default_encryption``: SSE-S3 (AES256) default encryption when the bucket has
  none (KMS would need a key policy the bucket's readers may not have).
- ``deactivate_old_access_keys``: the user's active access keys older than the rule's
  ``maxAccessKeyAge`` days are made Inactive, never deleted (a person can re-activate one).
- ``require_imdsv2``: the instance's metadata service requires session tokens.

Every action first reads the resource and changes only what is not yet as wanted, so a
redelivered or concurrent event changes nothing twice; AWS's "already so" answers
(duplicate permission, rule not found) count as done. A resource tagged
``playbook:remediation=skip`` is never changed; ``auto_remediate`` off (per rule, the
default) or dry-run only report what would be done. Back to COMPLIANT does nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.common import aws, events, report

FUNCTION_NAME = "config_remediator"
EXCLUSION_TAG_KEY = "playbook:remediation"
EXCLUSION_TAG_VALUE = "skip"
ADMIN_PORTS = (22, 3389)
WORLD_IPV4, WORLD_IPV6 = "0.0.0.0/0", "::/0"
# Member accounts see an organisation rule as OrgConfigRule-<name>-<8 random characters>.
ORG_RULE_PREFIX = "OrgConfigRule-"

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RuleSetting:
    action: str
    auto_remediate: bool
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    rules: Mapping[str, RuleSetting]  # deployed rule name -> its fix
    dry_run: bool
    notify_topic_arn: str

    @classmethod
    def from_env(cls) -> Config:
        raw = json.loads(os.environ.get("RULES", "{}"))
        rules = {
            name: RuleSetting(
                action=str(value["action"]),
                auto_remediate=bool(value.get("auto_remediate", False)),
                parameters={str(k): str(v) for k, v in (value.get("parameters") or {}).items()},
            )
            for name, value in raw.items()
        }
        return cls(
            rules=rules,
            dry_run=os.environ.get("DRY_RUN", "false").lower() == "true",
            notify_topic_arn=os.environ.get("NOTIFY_TOPIC_ARN", ""),
        )

    def setting(self, rule_name: str) -> RuleSetting | None:
        if rule_name in self.rules:
            return self.rules[rule_name]
        if rule_name.startswith(ORG_RULE_PREFIX):
            deployed, _, suffix = rule_name[len(ORG_RULE_PREFIX) :].rpartition("-")
            if deployed and len(suffix) == 8:
                return self.rules.get(deployed)
        return None


@dataclass
class Outcome:
    """What an action did (``changed``) or would do (``planned``), and what it left."""

    changed: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Rejected(ValueError):
    """The event is not one this function acts on (logged, not retried)."""


# --------------------------------------------------------------------------- actions


def _security_group_tags(group: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


def _is_excluded(tags: Mapping[str, str]) -> bool:
    return tags.get(EXCLUSION_TAG_KEY) == EXCLUSION_TAG_VALUE


def _world_ranges(permission: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(field, cidr key, entry) for each 0.0.0.0/0 and ::/0 source of a permission."""
    found = []
    for entry in permission.get("IpRanges", []):
        if entry.get("CidrIp") == WORLD_IPV4:
            found.append(("IpRanges", "CidrIp", entry))
    for entry in permission.get("Ipv6Ranges", []):
        if entry.get("CidrIpv6") == WORLD_IPV6:
            found.append(("Ipv6Ranges", "CidrIpv6", entry))
    return found


def _complement(low: int, high: int) -> list[tuple[int, int]]:
    """``low``-``high`` without the admin ports, as port ranges."""
    pieces, start = [], low
    for port in ADMIN_PORTS:
        if start <= port <= high:
            if start < port:
                pieces.append((start, port - 1))
            start = port + 1
    if start <= high:
        pieces.append((start, high))
    return pieces


def _ignoring(codes: tuple[str, ...], call: Callable[..., Any], **arguments: Any) -> bool:
    """``call(**arguments)``; False when AWS answers with one of ``codes`` (already so)."""
    try:
        call(**arguments)
    except Exception as exc:
        if aws.error_code(exc) in codes:
            return False
        raise
    return True


def revoke_open_admin_ports(resource_id: str, setting: RuleSetting, act: bool) -> Outcome:
    ec2 = aws.client("ec2")
    (group,) = ec2.describe_security_groups(GroupIds=[resource_id])["SecurityGroups"]
    outcome = Outcome()
    if _is_excluded(_security_group_tags(group)):
        outcome.skipped.append(f"{resource_id}: tagged {EXCLUSION_TAG_KEY}={EXCLUSION_TAG_VALUE}")
        return outcome
    for permission in group.get("IpPermissions", []):
        protocol = permission.get("IpProtocol")
        world = _world_ranges(permission)
        if not world:
            continue
        if protocol == "-1":
            outcome.skipped.append(
                f"{resource_id}: all traffic from {', '.join(e[2][e[1]] for e in world)} is "
                "allowed; splitting it would close other protocols, so a person must narrow it"
            )
            continue
        if protocol not in ("tcp", "6"):
            continue
        low, high = int(permission["FromPort"]), int(permission["ToPort"])
        opened = [port for port in ADMIN_PORTS if low <= port <= high]
        if not opened:
            continue
        for field_name, key, entry in world:
            cidr = entry[key]
            keep = _complement(low, high)
            described = f"tcp {low}-{high} from {cidr}" if low != high else f"tcp {low} from {cidr}"
            text = f"{resource_id}: revoke {described}" + (
                f", keep {', '.join(f'{a}-{b}' if a != b else str(a) for a, b in keep)}"
                if keep
                else ""
            )
            if not act:
                outcome.planned.append(text)
                continue
            for start, end in keep:
                _ignoring(
                    ("InvalidPermission.Duplicate",),
                    ec2.authorize_security_group_ingress,
                    GroupId=resource_id,
                    IpPermissions=[
                        {"IpProtocol": "tcp", "FromPort": start, "ToPort": end, field_name: [entry]}
                    ],
                )
            revoked = _ignoring(
                ("InvalidPermission.NotFound",),
                ec2.revoke_security_group_ingress,
                GroupId=resource_id,
                IpPermissions=[
                    {
                        "IpProtocol": permission["IpProtocol"],
                        "FromPort": low,
                        "ToPort": high,
                        field_name: [{key: cidr}],
                    }
                ],
            )
            if revoked:
                outcome.changed.append(text.replace(": revoke", ": revoked", 1))
    return outcome


def _bucket_tags(bucket: str) -> dict[str, str]:
    try:
        response = aws.client("s3").get_bucket_tagging(Bucket=bucket)
    except Exception as exc:
        if aws.error_code(exc) == "NoSuchTagSet":
            return {}
        raise
    return {t["Key"]: t["Value"] for t in response.get("TagSet", [])}


_PUBLIC_ACCESS_SETTINGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def block_s3_public_access(resource_id: str, setting: RuleSetting, act: bool) -> Outcome:
    s3, outcome = aws.client("s3"), Outcome()
    if _is_excluded(_bucket_tags(resource_id)):
        outcome.skipped.append(f"{resource_id}: tagged {EXCLUSION_TAG_KEY}={EXCLUSION_TAG_VALUE}")
        return outcome
    try:
        current = s3.get_public_access_block(Bucket=resource_id)["PublicAccessBlockConfiguration"]
    except Exception as exc:
        if aws.error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    off = [name for name in _PUBLIC_ACCESS_SETTINGS if not current.get(name)]
    if not off:
        return outcome
    text = f"{resource_id}: Block Public Access on ({', '.join(off)} were off)"
    if not act:
        outcome.planned.append(text)
        return outcome
    s3.put_public_access_block(
        Bucket=resource_id,
        PublicAccessBlockConfiguration=dict.fromkeys(_PUBLIC_ACCESS_SETTINGS, True),
    )
    outcome.changed.append(text)
    return outcome


def enable_s3_default_encryption(resource_id: str, setting: RuleSetting, act: bool) -> Outcome:
    s3, outcome = aws.client("s3"), Outcome()
    if _is_excluded(_bucket_tags(resource_id)):
        outcome.skipped.append(f"{resource_id}: tagged {EXCLUSION_TAG_KEY}={EXCLUSION_TAG_VALUE}")
        return outcome
    try:
        rules = s3.get_bucket_encryption(Bucket=resource_id)["ServerSideEncryptionConfiguration"]
    except Exception as exc:
        if aws.error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = {"Rules": []}
    if rules.get("Rules"):
        return outcome
    text = f"{resource_id}: default encryption SSE-S3 (AES256) on"
    if not act:
        outcome.planned.append(text)
        return outcome
    s3.put_bucket_encryption(
        Bucket=resource_id,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    outcome.changed.append(text)
    return outcome


def _user_name(user_id: str) -> str | None:
    """Config names an IAM user by its unique id (AIDA...); the IAM APIs want its name."""
    for page in aws.client("iam").get_paginator("list_users").paginate():
        for user in page["Users"]:
            if user["UserId"] == user_id or user["UserName"] == user_id:
                return str(user["UserName"])
    return None


def deactivate_old_access_keys(
    resource_id: str, setting: RuleSetting, act: bool, now: Now = system_now
) -> Outcome:
    iam, outcome = aws.client("iam"), Outcome()
    name = _user_name(resource_id)
    if name is None:
        outcome.skipped.append(f"{resource_id}: no such IAM user (deleted since the evaluation)")
        return outcome
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name).get("Tags", [])}
    if _is_excluded(tags):
        outcome.skipped.append(f"{name}: tagged {EXCLUSION_TAG_KEY}={EXCLUSION_TAG_VALUE}")
        return outcome
    max_age = int(setting.parameters.get("maxAccessKeyAge", "90"))
    cutoff = now() - timedelta(days=max_age)
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        if key["Status"] != "Active" or key["CreateDate"] > cutoff:
            continue
        age = (now() - key["CreateDate"]).days
        text = f"{name}: access key {key['AccessKeyId']} ({age} days old) deactivated"
        if not act:
            outcome.planned.append(text.replace("deactivated", "to deactivate"))
            continue
        iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
        outcome.changed.append(text)
    return outcome


def require_imdsv2(resource_id: str, setting: RuleSetting, act: bool) -> Outcome:
    ec2, outcome = aws.client("ec2"), Outcome()
    reservations = ec2.describe_instances(InstanceIds=[resource_id])["Reservations"]
    (instance,) = [i for r in reservations for i in r["Instances"]]
    if _is_excluded(_security_group_tags(instance)):
        outcome.skipped.append(f"{resource_id}: tagged {EXCLUSION_TAG_KEY}={EXCLUSION_TAG_VALUE}")
        return outcome
    if instance.get("MetadataOptions", {}).get("HttpTokens") == "required":
        return outcome
    text = f"{resource_id}: instance metadata requires IMDSv2 session tokens"
    if not act:
        outcome.planned.append(text)
        return outcome
    ec2.modify_instance_metadata_options(
        InstanceId=resource_id, HttpTokens="required", HttpEndpoint="enabled"
    )
    outcome.changed.append(text)
    return outcome


Action = Callable[[str, RuleSetting, bool], Outcome]
ACTIONS: Mapping[str, tuple[str, Action]] = {
    "revoke_open_admin_ports": ("AWS::EC2::SecurityGroup", revoke_open_admin_ports),
    "block_s3_public_access": ("AWS::S3::Bucket", block_s3_public_access),
    "enable_s3_default_encryption": ("AWS::S3::Bucket", enable_s3_default_encryption),
    "deactivate_old_access_keys": ("AWS::IAM::User", deactivate_old_access_keys),
    "require_imdsv2": ("AWS::EC2::Instance", require_imdsv2),
}


# --------------------------------------------------------------------------- the event


def remediate(event: Mapping[str, Any], config: Config, now: Now = system_now) -> dict[str, Any]:
    """Handle one EventBridge event; returns what was done (and reports it)."""
    mismatch = events.source_mismatch(event)
    if mismatch is not None:
        raise Rejected(mismatch)
    if event.get("detail-type") != events.CONFIG_COMPLIANCE_CHANGE:
        raise Rejected(f"not a {events.CONFIG_COMPLIANCE_CHANGE!r} event")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise Rejected("the event has no detail object")
    rule_name, resource_type = detail.get("configRuleName"), detail.get("resourceType")
    resource_id = detail.get("resourceId")
    new = detail.get("newEvaluationResult")
    compliance = new.get("complianceType") if isinstance(new, Mapping) else None
    if not all(isinstance(v, str) and v for v in (rule_name, resource_type, resource_id)):
        raise Rejected("configRuleName, resourceType and resourceId must be non-empty strings")
    assert isinstance(rule_name, str) and isinstance(resource_id, str)
    base = {"rule": rule_name, "resourceType": resource_type, "resourceId": resource_id}
    if compliance != "NON_COMPLIANT":
        return {**base, "status": "ignored", "reason": f"compliance is {compliance}"}
    setting = config.setting(rule_name)
    if setting is None:
        return {**base, "status": "ignored", "reason": "no automatic fix for this rule"}
    expected_type, action = ACTIONS[setting.action]
    if resource_type != expected_type:
        raise Rejected(f"{setting.action} fixes {expected_type}, not {resource_type}")
    act = setting.auto_remediate and not config.dry_run
    if setting.action == "deactivate_old_access_keys":
        outcome = deactivate_old_access_keys(resource_id, setting, act, now)
    else:
        outcome = action(resource_id, setting, act)
    if outcome.changed:
        status = "remediated"
    elif outcome.planned:
        status = "dry-run" if config.dry_run and setting.auto_remediate else "notify-only"
    elif outcome.skipped:
        status = "skipped"
    else:
        status = "already-compliant"
    result = {
        **base,
        "status": status,
        "action": setting.action,
        "changed": outcome.changed,
        "planned": outcome.planned,
        "skipped": outcome.skipped,
    }
    _report(event, config, result, now)
    return result


_SUMMARIES = {
    "remediated": "fixed",
    "dry-run": "dry run: nothing changed; this is what the fix would do",
    "notify-only": "auto_remediate is off for this rule: nothing changed; the fix would do this",
    "skipped": "left alone",
    "already-compliant": "already as the fix wants it (fixed earlier or by someone else)",
}


def _report(event: Mapping[str, Any], config: Config, result: Mapping[str, Any], now: Now) -> None:
    if not report.wanted(config.notify_topic_arn):
        return
    actions = [
        *result["changed"],
        *(f"would: {text}" for text in result["planned"]),
        *(f"skipped: {text}" for text in result["skipped"]),
    ]
    message = report.remediation_report(
        function=FUNCTION_NAME,
        title=f"Config {result['rule']}: {result['resourceId']} {result['status']}",
        severity="HIGH" if result["status"] in ("notify-only", "skipped") else "MEDIUM",
        summary=f"{result['resourceType']} {result['resourceId']} was NON_COMPLIANT with "
        f"{result['rule']}: {_SUMMARIES[result['status']]}.",
        actions=actions or ["nothing to change"],
        account=str(event.get("account", "")),
        region=str(event.get("region", "")),
        resources=[str(result["resourceId"])],
        finding_id=str(event.get("id")) if event.get("id") else None,
        now=now(),
    )
    report.publish(config.notify_topic_arn, message)
