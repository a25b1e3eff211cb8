"""The responder: answer a Security Hub custom action (or, when turned on, a GuardDuty
credential finding) by cutting off the credentials the finding names.

Actions
-------
``disable_access_keys``
    Deactivate (never delete: the key stays for the investigation and can be turned back
    on) every access key the finding names: ASFF ``Resources[]`` of type
    ``AwsIamAccessKey`` (``Id`` ``AWS::IAM::AccessKey:<key id>``, details in
    ``Details.AwsIamAccessKey``), GuardDuty's ``resource.accessKeyDetails``. A finding that
    names a user only (``AwsIamUser``) deactivates all of that user's active keys. A
    temporary key (``ASIA...``) cannot be deactivated: STS credentials live until they
    expire. For a role's session the role's sessions are revoked instead, and the finding
    says so.
``revoke_sessions``
    Deny every session of the role issued before now (the console's "Revoke active
    sessions": an inline ``AWSRevokeOlderSessions`` policy, see
    :mod:`functions.common.sessions`) for each role the finding names (``AwsIamRole``, or
    an ``AwsIamAccessKey`` whose principal is an assumed role).

Every action runs per finding (an event may carry several), is idempotent (a key already
inactive, a revocation already in place are reported as such), can run as a dry run, sets
the finding's workflow status to ``NOTIFIED`` with a note saying what was done
(``BatchUpdateFindings``), and reports to the notifications topic. A finding the action
does not apply to gets a clear rejection with its reason, never an exception; so does an
event whose ``source`` is not the service its ``detail-type`` names.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.common import aws, report, sessions
from functions.common.events import (
    GUARDDUTY_FINDING,
    SECURITY_HUB_CUSTOM_ACTION,
    source_mismatch,
)

FUNCTION_NAME = "responder"
DISABLE_ACCESS_KEYS = "disable_access_keys"
REVOKE_SESSIONS = "revoke_sessions"
ACTION_TITLES = {DISABLE_ACCESS_KEYS: "Disable Access Keys", REVOKE_SESSIONS: "Revoke Sessions"}
# Who wrote the note, as Security Hub shows it (Note.UpdatedBy, at most 512 characters).
NOTE_AUTHOR = "playbook-responder"
NOTE_LIMIT = 512  # Note.Text
WORKFLOW_STATUS = "NOTIFIED"
ACCESS_KEY_PREFIX = "AWS::IAM::AccessKey:"
ACCESS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")
IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# Errors that answer "this identity cannot be acted on", as opposed to AWS being unwell
# (which raises, so Lambda retries the whole event: every step is idempotent).
_REFUSALS = {"NoSuchEntity", "AccessDenied", "AccessDeniedException", "ValidationError"}

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


class ConfigError(ValueError):
    """The function's environment is wrong: raised, so the error alarm fires."""


@dataclass(frozen=True, slots=True)
class Config:
    action_arns: Mapping[str, str] = field(default_factory=dict)  # custom action ARN -> action
    notify_topic_arn: str = ""
    dry_run: bool = False
    # GuardDuty finding types (or prefixes) answered without a click; empty: none.
    automatic_finding_types: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        arns = {
            env.get("DISABLE_ACCESS_KEYS_ACTION_ARN", "").strip(): DISABLE_ACCESS_KEYS,
            env.get("REVOKE_SESSIONS_ACTION_ARN", "").strip(): REVOKE_SESSIONS,
        }
        try:
            types = json.loads(env.get("AUTOMATIC_FINDING_TYPES", "") or "[]")
        except ValueError:
            raise ConfigError("AUTOMATIC_FINDING_TYPES must be a JSON list") from None
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise ConfigError("AUTOMATIC_FINDING_TYPES must be a JSON list of finding types")
        dry_run = env.get("DRY_RUN", "false").strip().lower()
        if dry_run not in ("true", "false"):
            raise ConfigError(f"DRY_RUN must be true or false, got {dry_run[:20]!r}")
        return cls(
            action_arns={arn: action for arn, action in arns.items() if arn},
            notify_topic_arn=env.get("NOTIFY_TOPIC_ARN", "").strip(),
            dry_run=dry_run == "true",
            automatic_finding_types=tuple(types),
        )


# --------------------------------------------------------------------------- what a finding names


@dataclass(frozen=True, slots=True)
class Credential:
    """One identity a finding names: an access key, a user (no key), or a role."""

    kind: str  # "access_key" | "user" | "role"
    name: str = ""  # user or role name ("" when the finding does not say)
    access_key_id: str = ""
    principal_type: str = ""  # IAMUser, AssumedRole, Root, FederatedUser, ... ("" unknown)

    def describe(self) -> str:
        if self.kind == "access_key":
            owner = f" of {self.principal_type or 'principal'} {self.name}" if self.name else ""
            return f"access key {self.access_key_id}{owner}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Finding:
    finding_id: str
    product_arn: str  # with finding_id, how BatchUpdateFindings names the finding
    account: str
    title: str
    credentials: tuple[Credential, ...]


@dataclass(slots=True)
class Outcome:
    finding_id: str
    status: str = "done"  # done | unchanged | rejected | failed
    actions: list[str] = field(default_factory=list)
    reason: str = ""
    security_hub: str = ""  # what BatchUpdateFindings answered

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "findingId": self.finding_id,
            "status": self.status,
            "actions": self.actions,
        }
        if self.reason:
            result["reason"] = self.reason
        if self.security_hub:
            result["securityHub"] = self.security_hub
        return result


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _name_from_arn(arn: str, kind: str) -> str:
    """``alice`` from ``arn:aws:iam::111122223333:user/team/alice`` (``kind`` "user")."""
    match = re.fullmatch(rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:{kind}/(?:.*/)?([^/]+)", arn)
    return match.group(1) if match else ""


def _asff_credentials(resources: Any) -> tuple[Credential, ...]:
    found: list[Credential] = []
    for resource in resources if isinstance(resources, list) else []:
        resource = _dict(resource)
        kind, resource_id = resource.get("Type"), str(resource.get("Id") or "")
        details = _dict(resource.get("Details"))
        if kind == "AwsIamAccessKey":
            key = _dict(details.get("AwsIamAccessKey"))
            key_id = str(key.get("AccessKeyId") or resource_id.removeprefix(ACCESS_KEY_PREFIX))
            name = key.get("PrincipalName") or key.get("UserName") or ""
            found.append(
                Credential(
                    "access_key",
                    name=str(name),
                    access_key_id=key_id,
                    principal_type=str(key.get("PrincipalType") or ""),
                )
            )
        elif kind == "AwsIamUser":
            name = _dict(details.get("AwsIamUser")).get("UserName") or _name_from_arn(
                resource_id, "user"
            )
            found.append(Credential("user", name=str(name)))
        elif kind == "AwsIamRole":
            name = _dict(details.get("AwsIamRole")).get("RoleName") or _name_from_arn(
                resource_id, "role"
            )
            found.append(Credential("role", name=str(name)))
    return tuple(dict.fromkeys(found))


def _guardduty_credentials(detail: Mapping[str, Any]) -> tuple[Credential, ...]:
    key = _dict(_dict(detail.get("resource")).get("accessKeyDetails"))
    key_id, name = str(key.get("accessKeyId") or ""), str(key.get("userName") or "")
    principal_type = str(key.get("userType") or "")
    if key_id:
        return (Credential("access_key", name, key_id, principal_type),)
    if name and principal_type == "IAMUser":
        return (Credential("user", name=name),)
    if name and principal_type == "AssumedRole":
        return (Credential("role", name=name),)
    return ()


# --------------------------------------------------------------------------- the actions


class _Refused(Exception):
    """This credential cannot be acted on (the reason is the message)."""


def _user_of_key(credential: Credential) -> str:
    if credential.name and credential.principal_type in ("", "IAMUser"):
        return credential.name
    try:
        answer = aws.client("iam").get_access_key_last_used(AccessKeyId=credential.access_key_id)
    except Exception as exc:
        if aws.error_code(exc) in _REFUSALS:
            raise _Refused(
                f"access key {credential.access_key_id} is not a key of this account "
                f"({aws.error_code(exc)})"
            ) from exc
        raise
    user = answer.get("UserName")
    if not user:
        raise _Refused(f"access key {credential.access_key_id} belongs to no IAM user")
    return str(user)


def _active_keys(user: str) -> dict[str, str]:
    """Key id -> status of every access key of ``user``."""
    try:
        pages = aws.client("iam").get_paginator("list_access_keys").paginate(UserName=user)
        return {k["AccessKeyId"]: k["Status"] for page in pages for k in page["AccessKeyMetadata"]}
    except Exception as exc:
        if aws.error_code(exc) in _REFUSALS:
            raise _Refused(f"user {user}: {aws.error_code(exc)}") from exc
        raise


def _deactivate(user: str, key_id: str, dry_run: bool) -> str:
    if dry_run:
        return f"dry run: would deactivate access key {key_id} of user {user}"
    try:
        aws.client("iam").update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    except Exception as exc:
        if aws.error_code(exc) in _REFUSALS:
            raise _Refused(f"access key {key_id} of user {user}: {aws.error_code(exc)}") from exc
        raise
    return f"deactivated access key {key_id} of user {user} (not deleted)"


def _revoke(role: str, now: datetime, dry_run: bool, why: str = "") -> tuple[str, bool]:
    if not IAM_NAME.fullmatch(role):
        raise _Refused(f"not a role name: {role[:80]!r}")
    try:
        revocation = sessions.revoke_older_sessions(role, now, dry_run=dry_run)
    except Exception as exc:
        if aws.error_code(exc) in _REFUSALS:
            raise _Refused(f"role {role}: {aws.error_code(exc)}") from exc
        raise
    prefix = f"{why}: " if why else ""
    if not revocation.changed:
        return (
            f"{prefix}sessions of role {role} issued before {revocation.cutoff} were already "
            f"revoked (inline policy {sessions.POLICY_NAME})",
            False,
        )
    verb = "dry run: would revoke" if dry_run else "revoked"
    return (
        f"{prefix}{verb} the sessions of role {role} issued before {revocation.cutoff} "
        f"(inline policy {sessions.POLICY_NAME})",
        True,
    )


def disable_access_keys(
    credential: Credential, now: datetime, dry_run: bool
) -> tuple[list[str], bool]:
    """What was done for one credential, and whether anything changed."""
    if credential.kind == "role":
        raise _Refused(f"role {credential.name} has no access keys: use Revoke Sessions for a role")
    if credential.kind == "user":
        if not IAM_NAME.fullmatch(credential.name):
            raise _Refused(f"not a user name: {credential.name[:80]!r}")
        keys = _active_keys(credential.name)
        active = sorted(k for k, status in keys.items() if status == "Active")
        if not active:
            return [f"user {credential.name} has no active access key"], False
        return [_deactivate(credential.name, key, dry_run) for key in active], True
    key_id = credential.access_key_id
    if not ACCESS_KEY_ID.fullmatch(key_id):
        raise _Refused(f"not an access key id: {key_id[:40]!r}")
    if credential.principal_type == "Root":
        # IAM cannot act on the root user's keys; only the root user can, from its
        # security credentials page.
        raise _Refused(f"access key {key_id} is the root user's: deactivate it as the root user")
    if key_id.startswith("ASIA"):
        if credential.principal_type == "AssumedRole" and credential.name:
            action, changed = _revoke(
                credential.name,
                now,
                dry_run,
                why=f"temporary key {key_id} cannot be deactivated (STS credentials last "
                "until they expire)",
            )
            return [action], changed
        raise _Refused(
            f"temporary key {key_id} ({credential.principal_type or 'unknown principal'}) "
            "cannot be deactivated and names no role whose sessions could be revoked"
        )
    user = _user_of_key(credential)
    status = _active_keys(user).get(key_id)
    if status is None:
        raise _Refused(f"access key {key_id} is not a key of user {user}")
    if status != "Active":
        return [f"access key {key_id} of user {user} was already inactive"], False
    return [_deactivate(user, key_id, dry_run)], True


def revoke_sessions(credential: Credential, now: datetime, dry_run: bool) -> tuple[list[str], bool]:
    if credential.kind == "role" or (
        credential.kind == "access_key" and credential.principal_type == "AssumedRole"
    ):
        if not credential.name:
            raise _Refused(f"{credential.describe()} names no role")
        action, changed = _revoke(credential.name, now, dry_run)
        return [action], changed
    raise _Refused(
        f"{credential.describe()} is not a role's session: use Disable Access Keys for "
        "a user's keys"
    )


ACTIONS: Mapping[str, Callable[[Credential, datetime, bool], tuple[list[str], bool]]] = {
    DISABLE_ACCESS_KEYS: disable_access_keys,
    REVOKE_SESSIONS: revoke_sessions,
}


def respond(action: str, finding: Finding, account: str, now: datetime, dry_run: bool) -> Outcome:
    """Run ``action`` on every credential of one finding."""
    outcome = Outcome(finding.finding_id)
    if finding.account and account and finding.account != account:
        outcome.status, outcome.reason = (
            "rejected",
            f"the finding is in account {finding.account}; the responder acts in {account} only",
        )
        return outcome
    if not finding.credentials:
        outcome.status, outcome.reason = (
            "rejected",
            "the finding names no IAM access key, user or role",
        )
        return outcome
    changed, refusals = False, []
    for credential in finding.credentials:
        try:
            actions, did = ACTIONS[action](credential, now, dry_run)
        except _Refused as refusal:
            refusals.append(str(refusal))
            continue
        outcome.actions += actions
        changed = changed or did
    if refusals and not outcome.actions:
        outcome.status, outcome.reason = "rejected", "; ".join(refusals)
    else:
        outcome.status = "done" if changed else "unchanged"
        outcome.actions += [f"not done: {r}" for r in refusals]
    return outcome


# --------------------------------------------------------------------------- Security Hub


def note_text(action: str, outcome: Outcome, dry_run: bool) -> str:
    title = ACTION_TITLES[action] + (" (dry run)" if dry_run else "")
    body = "; ".join(outcome.actions) if outcome.actions else outcome.reason
    text = f"{title}: {outcome.status}. {body}"
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 3] + "..."


def update_finding(finding: Finding, text: str, set_workflow: bool) -> str:
    """Add the note (and set the workflow status to NOTIFIED); returns what Security Hub said.

    Never raises for a refusal: the remediation already happened, and the report carries it."""
    request: dict[str, Any] = {
        "FindingIdentifiers": [{"Id": finding.finding_id, "ProductArn": finding.product_arn}],
        "Note": {"Text": text, "UpdatedBy": NOTE_AUTHOR},
    }
    if set_workflow:
        request["Workflow"] = {"Status": WORKFLOW_STATUS}
    try:
        answer = aws.client("securityhub").batch_update_findings(**request)
    except Exception as exc:
        code = aws.error_code(exc)
        if not code:
            raise
        return f"not updated: {code}"
    unprocessed = answer.get("UnprocessedFindings") or []
    if unprocessed:
        first = unprocessed[0]
        return f"not updated: {first.get('ErrorCode')} {first.get('ErrorMessage', '')}".strip()
    return f"note added; workflow {WORKFLOW_STATUS}" if set_workflow else "note added"


# --------------------------------------------------------------------------- events


def _rejected(reason: str) -> dict[str, Any]:
    return {"status": "rejected", "reason": reason}


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    requested_by: str  # who or what asked, as the event tells it
    account: str
    region: str
    findings: tuple[Finding, ...]


def parse(event: Any, config: Config) -> Request | dict[str, Any]:
    """The request an event makes, or a rejection with its reason."""
    if not isinstance(event, dict):
        return _rejected(f"expected a JSON object, got {type(event).__name__}")
    spoofed = source_mismatch(event)
    if spoofed:
        return _rejected(f"spoofed event: {spoofed}")
    detail_type, detail = event.get("detail-type"), event.get("detail")
    account, region = str(event.get("account") or ""), str(event.get("region") or "")
    if not isinstance(detail, dict):
        return _rejected(f"event without a detail object (detail-type {str(detail_type)[:80]!r})")
    if detail_type == SECURITY_HUB_CUSTOM_ACTION:
        resources = event.get("resources")
        action_arn = resources[0] if isinstance(resources, list) and resources else None
        action = config.action_arns.get(action_arn) if isinstance(action_arn, str) else None
        if action is None:
            return _rejected(
                f"custom action {str(action_arn)[:200]!r} is not one the responder answers"
            )
        findings = []
        for raw in detail.get("findings") or []:
            raw = _dict(raw)
            if not isinstance(raw.get("Id"), str) or not isinstance(raw.get("ProductArn"), str):
                continue
            findings.append(
                Finding(
                    finding_id=raw["Id"],
                    product_arn=raw["ProductArn"],
                    account=str(raw.get("AwsAccountId") or ""),
                    title=str(raw.get("Title") or "")[:200],
                    credentials=_asff_credentials(raw.get("Resources")),
                )
            )
        if not findings:
            return _rejected("custom action event without a finding (Id and ProductArn)")
        name = str(detail.get("actionName") or action_arn)[:100]
        return Request(
            action, f"Security Hub custom action {name} ({action_arn})", account, region,
            tuple(findings),
        )  # fmt: skip
    if detail_type == GUARDDUTY_FINDING:
        finding_type = str(detail.get("type") or "")
        if not config.automatic_finding_types:
            return _rejected("automatic responses to GuardDuty findings are off")
        if not any(finding_type.startswith(t) for t in config.automatic_finding_types):
            return _rejected(f"finding type {finding_type[:120]!r} is not answered automatically")
        arn = detail.get("arn")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            return _rejected("GuardDuty finding without an arn")
        partition = arn.split(":")[1]
        finding = Finding(
            finding_id=arn,
            # GuardDuty findings reach Security Hub under their ARN, from this product.
            product_arn=f"arn:{partition}:securityhub:{detail.get('region') or region}"
            "::product/aws/guardduty",
            account=str(detail.get("accountId") or ""),
            title=str(detail.get("title") or finding_type)[:200],
            credentials=_guardduty_credentials(detail),
        )
        return Request(
            DISABLE_ACCESS_KEYS,
            f"automatic response to GuardDuty {finding_type}",
            account,
            region,
            (finding,),
        )
    return _rejected(f"unrecognised event (detail-type {str(detail_type)[:80]!r})")


def handle(event: Any, config: Config, now: Now = system_now) -> dict[str, Any]:
    request = parse(event, config)
    if isinstance(request, dict):
        return request
    moment = now()
    outcomes = []
    for finding in request.findings:
        outcome = respond(request.action, finding, request.account, moment, config.dry_run)
        if not config.dry_run:
            outcome.security_hub = update_finding(
                finding,
                note_text(request.action, outcome, config.dry_run),
                set_workflow=outcome.status in ("done", "unchanged"),
            )
        outcomes.append(outcome)
    result = {
        "status": "processed",
        "action": request.action,
        "dryRun": config.dry_run,
        "requestedBy": request.requested_by,
        "findings": [o.as_dict() for o in outcomes],
    }
    if report.wanted(config.notify_topic_arn):
        result["reportMessageId"] = report.publish(
            config.notify_topic_arn, _report(request, outcomes, config.dry_run, moment)
        )
    return result


def _report(
    request: Request, outcomes: Sequence[Outcome], dry_run: bool, now: datetime
) -> dict[str, Any]:
    title = ACTION_TITLES[request.action] + (" (dry run)" if dry_run else "")
    done = sum(o.status == "done" for o in outcomes)
    rejected = sum(o.status == "rejected" for o in outcomes)
    actions = [f"requested by {request.requested_by}"]
    for outcome in outcomes:
        lines = outcome.actions or [f"rejected: {outcome.reason}"]
        actions += [f"{outcome.finding_id}: {line}" for line in lines]
        if outcome.security_hub:
            actions.append(f"{outcome.finding_id}: Security Hub {outcome.security_hub}")
    return report.remediation_report(
        function=FUNCTION_NAME,
        title=f"{title}: {done} of {len(outcomes)} findings acted on",
        severity="HIGH" if done and not dry_run else "INFO",
        summary=(
            f"{title} on {len(outcomes)} finding(s): {done} acted on, "
            f"{len(outcomes) - done - rejected} already done, {rejected} rejected."
        ),
        actions=actions,
        account=request.account,
        region=request.region,
        resources=[o.finding_id for o in outcomes],
        finding_id=outcomes[0].finding_id if outcomes else None,
        now=now,
    )
