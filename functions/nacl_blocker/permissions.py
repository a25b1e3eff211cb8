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
        "record a block atomically (hit count, expiry), its rule number before the entry "
        "is created, and its end before the entry is removed; renew the ACL's lease before "
        "each write; complete idempotency records",
    ),
    Permission(
        "dynamodb:PutItem",
        "state_table",
        "take the ACL's lease (conditional write), note an orphan's first sighting, claim a "
        "finding delivery (idempotency)",
    ),
    Permission(
        "dynamodb:DeleteItem",
        "state_table",
        "drop the rows of expired, evicted and unblocked blocks once their entries are seen "
        "gone, release the ACL's lease; drop failed idempotency records",
    ),
    Permission(
        "dynamodb:GetItem",
        "state_table",
        "read when an orphan was first seen; read an existing idempotency record",
    ),
    Permission("dynamodb:Scan", "state_table", "list the blocks to place, evict and sweep"),
    Permission("sns:Publish", "notify_topic", "tell people what was blocked and why"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)
