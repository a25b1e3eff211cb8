"""Assertions on the synthesised forensics module."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from functions.forensics import documents, workflow

pytestmark = pytest.mark.synth


@pytest.fixture(scope="module")
def resources(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dist / "modules" / "forensics" / "main.tf.json").read_text())
    return data


def test_evidence_bucket_is_locked_encrypted_private_and_tls_only(
    resources: dict[str, Any],
) -> None:
    r = resources["resource"]
    bucket = r["aws_s3_bucket"]["evidence"]
    assert bucket["object_lock_enabled"] is True
    assert "data.aws_caller_identity.current.account_id" in bucket["bucket"]
    assert "data.aws_region.region.id" in bucket["bucket"], "bucket names are global"
    assert "aws_s3_bucket_versioning" not in r, "Object Lock versions the bucket for good"
    retention = r["aws_s3_bucket_object_lock_configuration"]["evidence_lock"]["rule"][
        "default_retention"
    ]
    assert retention == {
        "days": "${var.evidence_retention_days}",
        "mode": "${var.evidence_lock_mode}",
    }
    assert resources["variable"]["evidence_lock_mode"]["default"] == "GOVERNANCE"
    (rule,) = r["aws_s3_bucket_server_side_encryption_configuration"]["evidence_encryption"]["rule"]
    assert rule["apply_server_side_encryption_by_default"] == {
        "kms_master_key_id": "${aws_kms_key.this[0].arn}",
        "sse_algorithm": "aws:kms",
    }
    blocked = r["aws_s3_bucket_public_access_block"]["evidence_public_access"]
    assert all(
        blocked[k] is True
        for k in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        )
    )
    policy = r["aws_s3_bucket_policy"]["evidence_policy"]["policy"]
    assert '"aws:SecureTransport" = "false"' in policy and 'Effect = "Deny"' in policy


def test_state_machine_is_the_generated_standard_workflow(resources: dict[str, Any]) -> None:
    machine = resources["resource"]["aws_sfn_state_machine"]["isolation"]
    assert machine["type"] == "STANDARD"
    assert machine["tracing_configuration"] == {"enabled": True}
    assert machine["logging_configuration"]["level"] == "ALL"
    assert machine["logging_configuration"]["include_execution_data"] is True
    expected = workflow.definition("${aws_lambda_function.forensics[0].arn}")
    assert json.loads(machine["definition"]) == expected


def test_account_wide_names_carry_the_region(resources: dict[str, Any]) -> None:
    r = resources["resource"]
    names = [role["name"] for role in r["aws_iam_role"].values()]
    names.append(r["aws_iam_policy"]["evidence_writer"]["name"])
    assert len(names) == 4
    for name in names:
        assert name.endswith("-${data.aws_region.region.id}"), name


def test_ssm_documents_are_not_interpolated(resources: dict[str, Any]) -> None:
    """The shell's ${...} must reach SSM as written, so Terraform sees $${...}."""
    volatile = resources["resource"]["aws_ssm_document"]["volatile"]
    assert volatile["document_type"] == "Command"
    content = volatile["content"]
    assert "$${sse[@]}" in content and not re.search(r"(?<!\$)\$\{sse", content)
    unescaped = json.loads(content.replace("$${", "${").replace("%%{", "%{"))
    assert unescaped == documents.volatile_document()
    memory = resources["resource"]["aws_ssm_document"]["memory"]
    assert memory["count"] == "${var.create && var.memory_capture_enabled ? 1 : 0}"


def test_triggers_off_by_default_and_rules_target_the_workflow(resources: dict[str, Any]) -> None:
    assert resources["variable"]["create_guardduty_rule"]["default"] is False
    rules = resources["resource"]["aws_cloudwatch_event_rule"]
    assert "var.create_guardduty_rule" in rules["guardduty"]["count"]
    assert "{prefix = t}" in rules["guardduty"]["event_pattern"]
    assert "var.isolate_action_arn" in rules["security_hub"]["event_pattern"]
    for target in resources["resource"]["aws_cloudwatch_event_target"].values():
        assert target["arn"] == "${aws_sfn_state_machine.isolation[0].arn}"
        assert target["retry_policy"]["maximum_retry_attempts"] > 0


def test_step_function_policy_is_generated_from_declared_permissions(
    resources: dict[str, Any],
) -> None:
    from functions.forensics.permissions import PERMISSIONS

    policy = resources["resource"]["aws_iam_role_policy"]["forensics_policy"]["policy"]
    actions = set(re.findall(r'"([a-z0-9]+:[A-Za-z]+)"', policy))
    service = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
    assert actions - service == {p.action for p in PERMISSIONS}
    statements = re.findall(r"\{Sid = \"(\w+)\".*?Resource = ([^}]*)\}", policy)
    wildcard = [sid for sid, resource in statements if resource.strip() == '["*"]']
    assert wildcard == ["DeclaredDescribe"], "only calls AWS cannot scope get *"
    assert "aws_s3_bucket.evidence[*].arn" in policy
