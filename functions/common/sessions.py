"""Revoke an IAM role's sessions issued before a moment, as the console's "Revoke active
sessions" does.

Temporary credentials cannot be recalled, but a deny-all inline policy conditioned on
``aws:TokenIssueTime`` earlier than a cut-off makes every session issued before it useless,
while new sessions (the workload after the incident, or nobody once its instance profile
is gone) are unaffected. The policy carries the console's name, ``AWSRevokeOlderSessions``,
so people and tools that know the console's action recognise it. See
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_revoke-sessions.html.

Idempotent: a role already revoked at or after the cut-off is left alone; an older
revocation is moved forward. Used by the forensics workflow and by the responder's Revoke
Sessions action (which also asks what it *would* do, for its dry-run mode).

IAM has no conditional write, so two revocations of one role at the same moment may land
in either order and leave the earlier of their two cut-offs (seconds apart); the next
revocation moves it forward again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from functions.common import aws

POLICY_NAME = "AWSRevokeOlderSessions"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class Revocation:
    role_name: str
    cutoff: str  # sessions issued before this moment (UTC, ISO 8601) are denied
    changed: bool  # False when an equal or later revocation was already in place


def revocation_policy(cutoff: datetime) -> dict[str, Any]:
    """The policy document the console writes for "Revoke active sessions"."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff.strftime(TIME_FORMAT)}},
            }
        ],
    }


def _current_cutoff(role_name: str) -> datetime | None:
    try:
        response = aws.client("iam").get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)
    except Exception as exc:
        if aws.error_code(exc) == "NoSuchEntity":
            return None
        raise
    document = response["PolicyDocument"]
    if isinstance(document, str):  # IAM returns it URL-encoded; boto3 usually decodes it
        document = json.loads(unquote(document))
    cutoffs = [
        statement.get("Condition", {}).get("DateLessThan", {}).get("aws:TokenIssueTime")
        for statement in document.get("Statement", [])
    ]
    parsed = [datetime.strptime(c, TIME_FORMAT).replace(tzinfo=UTC) for c in cutoffs if c]
    return max(parsed) if parsed else None


def revoke_older_sessions(role_name: str, cutoff: datetime, *, dry_run: bool = False) -> Revocation:
    """Deny every session of ``role_name`` issued before ``cutoff`` (whole seconds).

    With ``dry_run`` nothing is written: the result says whether the policy would change."""
    cutoff = cutoff.astimezone(UTC).replace(microsecond=0)
    current = _current_cutoff(role_name)
    if current is not None and current >= cutoff:
        return Revocation(role_name, current.strftime(TIME_FORMAT), changed=False)
    if dry_run:
        return Revocation(role_name, cutoff.strftime(TIME_FORMAT), changed=True)
    aws.client("iam").put_role_policy(
        RoleName=role_name,
        PolicyName=POLICY_NAME,
        PolicyDocument=json.dumps(revocation_policy(cutoff), sort_keys=True),
    )
    return Revocation(role_name, cutoff.strftime(TIME_FORMAT), changed=True)
