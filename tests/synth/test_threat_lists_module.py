"""Assertions on the synthesised threat_lists module and on its inputs' validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bundle.inputs import parameters_model
from modules.threat_lists import ThreatListsModule

pytestmark = pytest.mark.synth


@pytest.fixture(scope="module")
def module(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (dist / "modules" / "threat_lists" / "main.tf.json").read_text()
    )
    return data


def test_list_bucket_is_encrypted_versioned_private_and_tls_only(module: dict[str, Any]) -> None:
    r = module["resource"]
    bucket = r["aws_s3_bucket"]["lists"]
    assert "data.aws_caller_identity.current.account_id" in bucket["bucket"]
    versioning = r["aws_s3_bucket_versioning"]["lists_versioning"]
    assert versioning["versioning_configuration"] == {"status": "Enabled"}
    (rule,) = r["aws_s3_bucket_server_side_encryption_configuration"]["lists_encryption"]["rule"]
    assert rule["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    blocked = r["aws_s3_bucket_public_access_block"]["lists_public_access"]
    assert all(v is True for k, v in blocked.items() if k.startswith(("block", "ignore", "restr")))
    policy = r["aws_s3_bucket_policy"]["lists_policy"]["policy"]
    assert '"aws:SecureTransport" = "false"' in policy and 'Effect = "Deny"' in policy
    logging = r["aws_s3_bucket_logging"]["lists_logging"]
    assert logging["count"] == '${var.create && var.access_log_bucket != "" ? 1 : 0}'


def test_a_threat_intel_set_per_feed_inactive_until_the_updater_activates_it(
    module: dict[str, Any],
) -> None:
    sets = module["resource"]["aws_guardduty_threatintelset"]
    feed = sets["feed"]
    assert feed["count"] == "${var.create ? length(var.feeds) : 0}"
    assert feed["activate"] is False
    assert feed["lifecycle"]["ignore_changes"] == ["activate"]
    assert feed["location"] == "${local.list_location}${var.feeds[count.index].name}.txt"
    assert sets["manual"]["location"] == "${local.list_location}manual.txt"
    trusted = module["resource"]["aws_guardduty_ipset"]["trusted"]
    assert trusted["lifecycle"]["replace_triggered_by"] == ["aws_s3_object.trusted_list"]


def test_detector_is_created_only_when_asked(module: dict[str, Any]) -> None:
    detector = module["resource"]["aws_guardduty_detector"]["detector"]
    assert detector["count"] == "${var.create && var.create_detector ? 1 : 0}"
    preconditions = module["resource"]["aws_lambda_function"]["threat_feed"]["lifecycle"][
        "precondition"
    ]
    messages = " ".join(p["error_message"] for p in preconditions)
    assert "Set detector_id, or create_detector = true" in messages
    assert "at most 6 threat lists" in messages


def test_updater_policy_comes_from_its_declared_permissions(module: dict[str, Any]) -> None:
    policy = module["resource"]["aws_iam_role_policy"]["threat_feed_policy"]["policy"]
    for action in (
        "guardduty:UpdateThreatIntelSet",
        "iam:PutRolePolicy",
        "s3:PutObject",
        "secretsmanager:GetSecretValue",
    ):
        assert f'"{action}"' in policy
    assert "AWSServiceRoleForAmazonGuardDuty" in policy
    assert "threatintelset/*" in policy


def test_one_schedule_per_refresh_interval(module: dict[str, Any]) -> None:
    rule = module["resource"]["aws_cloudwatch_event_rule"]["schedule"]
    assert rule["schedule_expression"] == "rate(${local.refresh_minutes[count.index]} minutes)"
    target = module["resource"]["aws_cloudwatch_event_target"]["schedule_target"]
    assert "local.refresh_groups[local.refresh_minutes[count.index]]" in target["input"]
    assert target["dead_letter_config"]["arn"] == "${aws_sqs_queue.events_dlq[0].arn}"


FEED = {"name": "drop", "url": "https://www.spamhaus.org/drop/drop.txt", "format": "drop"}


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ([{**FEED, "name": f"f{i}"} for i in range(7)], "at most 6 threat lists"),
        ([FEED, FEED], "Feed names must be unique"),
        ([{**FEED, "url": "http://www.spamhaus.org/drop/drop.txt"}], "https:// URLs"),
        ([{**FEED, "format": "csv"}], "A csv feed needs its column"),
        ([{**FEED, "format": "xml"}], "Feed formats are"),
        ([{**FEED, "refresh_minutes": 5}], "refresh_minutes must be one of"),
        ([{**FEED, "name": "manual"}], "not manual"),
    ],
)
def test_environment_files_refuse_bad_feeds(feeds: list[dict[str, Any]], message: str) -> None:
    model = parameters_model("threat_lists", ThreatListsModule.all_inputs())
    with pytest.raises(ValidationError, match=message):
        model(feeds=feeds)


def test_environment_file_accepts_good_feeds() -> None:
    model = parameters_model("threat_lists", ThreatListsModule.all_inputs())
    parsed = model(feeds=[FEED, {**FEED, "name": "vendor", "format": "csv", "column": "ip"}])
    assert len(parsed.feeds) == 2  # type: ignore[attr-defined]
