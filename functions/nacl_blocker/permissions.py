"""What nacl_blocker calls, so its role allows exactly that (see functions.common.permissions)."""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "ec2:DescribeNetworkAcls",
        "describe",
        "read the entries of a network ACL and find the ACL of a finding's subnet; EC2 "
        "Describe* actions support no resource-level permissions, so this one needs '*'",
    ),
    Permission(
        "ec2:CreateNetworkAclEntry",
        "network_acls",
        "add a deny entry for an attacker address in the reserved rule-number range",
    ),
    Permission(
        "ec2:DeleteNetworkAclEntry",
        "network_acls",
        "remove expired, evicted, unblocked and unrecorded entries of this remediator",
    ),
    Permission(
        "dynamodb:UpdateItem",
        "state_table",
        "record a block atomically (hit count, expiry), link and number seats, complete "
        "idempotency records",
    ),
    Permission(
        "dynamodb:PutItem",
        "state_table",
        "take a seat (conditional write) and claim a finding delivery (idempotency)",
    ),
    Permission(
        "dynamodb:DeleteItem",
        "state_table",
        "drop expired, evicted and unblocked rows and their seats; drop failed idempotency records",
    ),
    Permission(
        "dynamodb:GetItem",
        "state_table",
        "check a seat after creating its entry; read an existing idempotency record",
    ),
    Permission("dynamodb:Scan", "state_table", "list blocks and seats to place, evict and sweep"),
    Permission("sns:Publish", "notify_topic", "tell people what was blocked and why"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)
