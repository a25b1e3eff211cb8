"""What config_remediator calls, so its role allows exactly that (see
functions.common.permissions). Symbolic resources are resolved by modules/config_rules.py:

- ``describe``: ``*``. EC2 describe calls and iam:ListUsers accept no resource-level
  scoping (the Service Authorization Reference lists none for them).
- ``security_groups`` / ``instances``: every security group / instance of this account
  and region (Config reports any of them).
- ``buckets``: every S3 bucket (bucket ARNs carry neither account nor region).
- ``users``: every IAM user of this account.
- ``notify_topic`` / ``notify_kms_key``: the notifications topic and its key.

IAM action names differ from S3 API names for public access blocks and encryption:
GetPublicAccessBlock is ``s3:GetBucketPublicAccessBlock``, GetBucketEncryption is
``s3:GetEncryptionConfiguration`` (tests map them, see IAM_ACTION_OF there).
"""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission("ec2:DescribeSecurityGroups", "describe", "read the group's rules and tags"),
    Permission(
        "ec2:AuthorizeSecurityGroupIngress",
        "security_groups",
        "keep the other ports of a world-open range that included 22 or 3389",
    ),
    Permission(
        "ec2:RevokeSecurityGroupIngress",
        "security_groups",
        "revoke 0.0.0.0/0 and ::/0 ingress on 22 and 3389",
    ),
    Permission(
        "ec2:DescribeInstances", "describe", "read the instance's metadata options and tags"
    ),
    Permission("ec2:ModifyInstanceMetadataOptions", "instances", "require IMDSv2"),
    Permission("s3:GetBucketTagging", "buckets", "honour the exclusion tag"),
    Permission("s3:GetBucketPublicAccessBlock", "buckets", "read Block Public Access"),
    Permission("s3:PutBucketPublicAccessBlock", "buckets", "turn Block Public Access on"),
    Permission("s3:GetEncryptionConfiguration", "buckets", "read default encryption"),
    Permission("s3:PutEncryptionConfiguration", "buckets", "turn default encryption on"),
    Permission("iam:ListUsers", "describe", "find the user Config names by its unique id"),
    Permission("iam:ListUserTags", "users", "honour the exclusion tag"),
    Permission("iam:ListAccessKeys", "users", "find the user's old active keys"),
    Permission("iam:UpdateAccessKey", "users", "deactivate (never delete) old keys"),
    Permission("sns:Publish", "notify_topic", "report what was done"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)
