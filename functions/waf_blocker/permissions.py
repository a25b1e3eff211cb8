"""What waf_blocker calls, so its role allows exactly that (see functions.common.permissions)."""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission("wafv2:GetIPSet", "ip_sets", "read the blocklist and its LockToken"),
    Permission("wafv2:UpdateIPSet", "ip_sets", "add, expire and evict blocked addresses"),
    Permission(
        "dynamodb:UpdateItem",
        "state_table",
        "record a block atomically (hit count, expiry) and complete idempotency records",
    ),
    Permission(
        "dynamodb:DeleteItem",
        "state_table",
        "drop expired, evicted and unblocked rows; drop failed idempotency records",
    ),
    Permission("dynamodb:Scan", "state_table", "list blocks to sweep, evict and reconcile"),
    Permission("dynamodb:PutItem", "state_table", "claim a finding delivery (idempotency)"),
    Permission(
        "dynamodb:GetItem",
        "state_table",
        "read an existing idempotency record when the failed claim does not return it",
    ),
    Permission("sns:Publish", "notify_topic", "tell people what was blocked and why"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)
