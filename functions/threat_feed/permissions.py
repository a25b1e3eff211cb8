"""What the threat feed updater calls, so its role allows exactly that (see
functions.common.permissions). Symbolic resources are resolved by modules/threat_lists.py:

- ``list_objects``: the objects under ``lists/`` and ``state/`` of the module's bucket.
- ``list_key``: the module's KMS key (the bucket's default encryption).
- ``threat_intel_sets``: the threat intel sets of the detector.
- ``guardduty_service_role``: GuardDuty's service-linked role. AWS documents that whoever
  updates a threat list needs ``iam:PutRolePolicy`` and ``iam:DeleteRolePolicy`` on it:
  GuardDuty grants itself read access to the list's location through that role
  (https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_upload-lists.html).
- ``feed_secrets``: the Secrets Manager secrets holding feeds' auth headers.
- ``notify_topic`` / ``notify_kms_key``: the notifications topic and its key.
"""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission("s3:GetObject", "list_objects", "read a feed's state (validators, sha256)"),
    Permission("s3:PutObject", "list_objects", "write a changed list and its state"),
    Permission("s3:ListBucket", "list_bucket", "tell a missing state object from a denied read"),
    Permission("kms:GenerateDataKey", "list_key", "write KMS-encrypted lists"),
    Permission("kms:Decrypt", "list_key", "read KMS-encrypted state"),
    Permission(
        "guardduty:UpdateThreatIntelSet",
        "threat_intel_sets",
        "activate: GuardDuty reloads the list",
    ),
    Permission(
        "iam:PutRolePolicy", "guardduty_service_role", "GuardDuty grants itself the list's location"
    ),
    Permission(
        "iam:DeleteRolePolicy", "guardduty_service_role", "GuardDuty replaces that grant on update"
    ),
    Permission("secretsmanager:GetSecretValue", "feed_secrets", "a feed's auth header"),
    Permission("sns:Publish", "notify_topic", "report each run"),
    Permission("kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted topic"),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted topic"),
    report.PUT_EVENTS,
)
