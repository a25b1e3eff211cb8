"""The IAM actions the notifier calls; the notifications module builds its role from this."""

from __future__ import annotations

from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        action="secretsmanager:GetSecretValue",
        resource="webhook_secret",
        why="read the Slack/Teams/Chime webhook URLs from the secret named by WEBHOOK_SECRET_NAME",
    ),
    Permission(
        action="sns:Publish",
        resource="email_topic",
        why="publish the e-mail text to the topic named by EMAIL_TOPIC_ARN",
    ),
    Permission(
        action="kms:GenerateDataKey",
        resource="kms_key",
        why=(
            "the e-mail topic is KMS-encrypted: SNS generates the data key with the publisher's "
            "permissions, so the Lambda code never calls KMS itself but its role needs this"
        ),
    ),
    Permission(
        action="kms:Decrypt",
        resource="kms_key",
        why=(
            "publishing to a KMS-encrypted topic needs Decrypt on the key as well (SNS calls it "
            "on the publisher's behalf); it also covers a webhook secret encrypted with that key"
        ),
    ),
)
