"""What the responder calls, so its role allows exactly that (see
functions.common.permissions). Symbolic resources are resolved by
modules/incident_response.py:

- ``users``: the IAM users whose keys it may deactivate (the module's ``user_arns``;
  every user of the account by default).
- ``roles``: the roles whose sessions it may revoke (``role_arns``; every role by default).
- ``hub``: this account's Security Hub in this region (``hub/default``), the resource
  BatchUpdateFindings is authorised on.
- ``notify_topic`` / ``notify_kms_key``: the notifications topic and its key.
"""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "iam:GetAccessKeyLastUsed",
        "users",
        "find the user of a key when the finding names the key only",
    ),
    Permission("iam:ListAccessKeys", "users", "read a user's keys and their status"),
    Permission("iam:UpdateAccessKey", "users", "deactivate a key (never delete it)"),
    Permission("iam:GetRolePolicy", "roles", "read an earlier session revocation"),
    Permission("iam:PutRolePolicy", "roles", "revoke the role's older sessions"),
    Permission(
        "securityhub:BatchUpdateFindings",
        "hub",
        "set the finding's workflow to NOTIFIED and add a note saying what was done",
    ),
    Permission("sns:Publish", "notify_topic", "report what was done"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)

# Which declared actions each custom action uses (the module README's action table).
_REPORTING = (
    "securityhub:BatchUpdateFindings",
    "sns:Publish",
    "kms:GenerateDataKey",
    "kms:Decrypt",
    report.PUT_EVENTS.action,
)
ACTION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "disable_access_keys": (
        "iam:GetAccessKeyLastUsed",
        "iam:ListAccessKeys",
        "iam:UpdateAccessKey",
        # a role's temporary key is answered by revoking the role's sessions
        "iam:GetRolePolicy",
        "iam:PutRolePolicy",
        *_REPORTING,
    ),
    "revoke_sessions": ("iam:GetRolePolicy", "iam:PutRolePolicy", *_REPORTING),
}
