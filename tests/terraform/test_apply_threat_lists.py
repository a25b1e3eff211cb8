"""Apply the generated threat_lists module into a moto server with the real Terraform CLI
and AWS provider (pytest-terraform); run the threat_feed updater in-process against the
applied bucket and key with a feed served from 127.0.0.1; plan the parts moto lacks;
destroy.

What moto cannot do, and what this test does:
- GuardDuty threat intel sets and IP sets (CreateThreatIntelSet, CreateIPSet,
  UpdateThreatIntelSet) are not implemented: the root configuration applies with no
  feeds, manual entries or trusted ranges, and the test PLANS them with -var and checks
  the planned sets, trusted list object and schedules. The updater's UpdateThreatIntelSet
  call goes to a botocore Stubber that checks its request.
- Lambda invoke needs Docker: the handler runs in-process with the applied function's
  environment (its FEEDS / THREAT_LISTS set to the feed the test serves, since no set
  could be applied).
- moto evaluates the bucket's TLS-only Deny without its condition, so every request over
  moto's http would be denied: requests are taken as TLS, as against AWS
  (bundle/motoworkflow.bucket_policies_over_tls).
- moto drops Lambda DeadLetterConfig, so a second plan wants to set it again; that is the
  only difference allowed.
- moto rejects unknown layer ARNs: the root configuration publishes a stand-in layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from pytest_terraform import terraform

from bundle.feedserver import feed_server
from bundle.motoserver import InProcessContext, scoped_environ
from bundle.motoworkflow import bucket_policies_over_tls
from tests.terraform.conftest import MotoStack, outputs, plan_fails, planned_changes, terraform_in

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "threat_lists_apply"
STACK: list[MotoStack] = []
FEEDS = [
    {"name": "incidents", "url": "https://feeds.example.com/incidents.txt", "refresh_minutes": 60},
    {"name": "drop", "url": "https://www.spamhaus.org/drop/drop.txt", "format": "drop"},
    {
        "name": "vendor",
        "url": "https://intel.example.com/stix",
        "format": "stix",
        "refresh_minutes": 60,
        "auth_secret": "feeds/vendor",
    },
]


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> Iterator[None]:
    STACK[:] = [moto_stack]
    with bucket_policies_over_tls():
        yield


terraform("threat_lists_apply", scope="module", teardown=terraform.TEARDOWN_ON)


def planned(state: Any, *variables: str) -> dict[str, Any]:
    """The planned values of every resource of a plan with ``variables``, by address."""
    plan_file = f"{state.terraform.work_dir}/feeds-plan"
    arguments = ["plan", "-input=false", "-no-color", f"-state={state.terraform.state_path}"]
    for variable in variables:
        arguments += ["-var", variable]
    result = terraform_in(state, ROOT_CONFIG, [*arguments, f"-out={plan_file}"])
    assert result.ok, result.output
    shown = terraform_in(state, ROOT_CONFIG, ["show", "-json", plan_file])
    changes = json.loads(shown.output)["resource_changes"]
    return {c["address"]: c["change"] for c in changes if c["change"]["actions"] != ["no-op"]}


def test_bucket_is_private_encrypted_versioned_and_tls_only(threat_lists_apply: Any) -> None:
    out = outputs(threat_lists_apply)
    s3 = STACK[0].client("s3")
    bucket = out["list_bucket_name"]
    assert bucket == "tlapply-threat-lists-123456789012-us-east-1"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    default = rule["ApplyServerSideEncryptionByDefault"]
    assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": out["kms_key_arn"]}
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_detector_key_and_updater_policy(threat_lists_apply: Any) -> None:
    out = outputs(threat_lists_apply)
    detector = out["detector_id"]
    assert STACK[0].client("guardduty").get_detector(DetectorId=detector)["Status"] == "ENABLED"
    key_policy = json.loads(
        STACK[0]
        .client("kms")
        .get_key_policy(KeyId=out["kms_key_arn"], PolicyName="default")["Policy"]
    )
    reader = next(s for s in key_policy["Statement"] if s["Sid"] == "GuardDutyReadsThreatLists")
    assert reader["Principal"]["AWS"].endswith(
        ":role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty"
    )
    iam = STACK[0].client("iam")
    policy = iam.get_role_policy(
        RoleName="tlapply-threat-feed-us-east-1", PolicyName="least-privilege"
    )["PolicyDocument"]["Statement"]
    by_action = {action: s["Resource"] for s in policy for action in s["Action"]}
    assert by_action["guardduty:UpdateThreatIntelSet"] == [
        f"arn:aws:guardduty:us-east-1:123456789012:detector/{detector}/threatintelset/*"
    ]
    assert by_action["iam:PutRolePolicy"] == [
        "arn:aws:iam::123456789012:role/aws-service-role/guardduty.amazonaws.com/"
        "AWSServiceRoleForAmazonGuardDuty"
    ]
    bucket = f"arn:aws:s3:::{out['list_bucket_name']}"
    assert sorted(by_action["s3:PutObject"]) == [f"{bucket}/lists/*", f"{bucket}/state/*"]
    assert "secretsmanager:GetSecretValue" not in by_action  # no feed has a secret


def test_feeds_plan_a_set_each_and_one_schedule_per_interval(threat_lists_apply: Any) -> None:
    """moto has no GuardDuty threat intel sets or IP sets: planned, not applied."""
    changes = planned(
        threat_lists_apply,
        f"feeds={json.dumps(FEEDS)}",
        'manual_entries=["185.220.101.7"]',
        'trusted_cidrs=["203.0.113.0/24"]',
    )
    sets = {
        address: change["after"]
        for address, change in changes.items()
        if address.startswith("module.threat_lists.aws_guardduty_threatintelset.")
    }
    assert {s["name"] for s in sets.values()} == {
        "tlapply-incidents",
        "tlapply-drop",
        "tlapply-vendor",
        "tlapply-manual",
    }
    bucket = "tlapply-threat-lists-123456789012-us-east-1"
    for value in sets.values():
        assert value["format"] == "TXT" and value["activate"] is False
        name = value["name"].removeprefix("tlapply-")
        assert value["location"] == f"https://s3.amazonaws.com/{bucket}/lists/{name}.txt"
    rules = {
        change["after"]["schedule_expression"]: address
        for address, change in changes.items()
        if ".aws_cloudwatch_event_rule.schedule[" in address
    }
    assert sorted(rules) == ["rate(1440 minutes)", "rate(60 minutes)"]
    inputs = {
        json.loads(change["after"]["input"])["feeds"].__repr__()
        for address, change in changes.items()
        if ".aws_cloudwatch_event_target.schedule_target[" in address
    }
    assert inputs == {repr(["incidents", "vendor"]), repr(["drop", "manual"])}
    trusted = changes["module.threat_lists.aws_guardduty_ipset.trusted[0]"]["after"]
    assert trusted["activate"] is True and trusted["format"] == "TXT"
    trusted_object = changes["module.threat_lists.aws_s3_object.trusted_list[0]"]["after"]
    assert trusted_object["content"] == "203.0.113.0/24\n"
    policy = changes["module.threat_lists.aws_iam_role_policy.threat_feed_policy[0]"]["after"]
    assert (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:feeds/vendor-??????"
        in policy["policy"]
    )


def test_more_than_six_lists_fail_the_plan(threat_lists_apply: Any) -> None:
    """Six feeds pass the variable's own validation (at most 6); the manual list makes
    seven, which the cross-variable precondition refuses."""
    six = [{"name": f"feed-{i}", "url": f"https://feeds.example.com/{i}"} for i in range(6)]
    message = plan_fails(
        threat_lists_apply,
        ROOT_CONFIG,
        "-var",
        f"feeds={json.dumps(six)}",
        "-var",
        'manual_entries=["185.220.101.7"]',
    )
    assert "GuardDuty takes at most 6 threat lists per detector" in message


def test_updater_writes_the_applied_bucket_with_the_module_key(threat_lists_apply: Any) -> None:
    from functions.common import aws
    from functions.threat_feed import handler

    out = outputs(threat_lists_apply)
    function = (
        STACK[0]
        .client("lambda")
        .get_function_configuration(FunctionName=out["threat_feed_function_arn"])
    )
    variables = dict(function["Environment"]["Variables"])
    assert variables["DETECTOR_ID"] == out["detector_id"]
    assert variables["LIST_BUCKET"] == out["list_bucket_name"]
    assert json.loads(variables["THREAT_LISTS"]) == {}
    location = f"https://s3.amazonaws.com/{out['list_bucket_name']}/lists/incidents.txt"
    with feed_server() as server:
        url = server.serve("incidents.txt", "185.220.101.7\n185.220.100.9\n10.0.0.1\n91.92.240.5\n")
        variables.update(
            FEEDS=json.dumps([{"name": "incidents", "url": url, "format": "plain"}]),
            THREAT_LISTS=json.dumps({"incidents": {"id": "a" * 32, "location": location}}),
            THREAT_FEED_ALLOW_HTTP_LOOPBACK="1",
            AWS_REGION="us-east-1",
        )
        with scoped_environ(variables):
            aws.reset()
            stubber = Stubber(aws.client("guardduty"))
            stubber.add_response(
                "update_threat_intel_set",
                {},
                {
                    "DetectorId": out["detector_id"],
                    "ThreatIntelSetId": "a" * 32,
                    "Location": location,
                    "Activate": True,
                },
            )
            with stubber:
                context = InProcessContext.of(out["threat_feed_function_arn"])
                result = handler.lambda_handler({}, context)  # type: ignore[arg-type]
                stubber.assert_no_pending_responses()
            aws.reset()
    (item,) = result["lists"]
    assert item["outcome"] == "updated" and item["entries"] == 2
    assert item["counts"] == {
        "allow-listed by 185.220.100.0/24": 1,
        "private address (RFC 1918)": 1,
    }
    s3 = STACK[0].client("s3")
    written = s3.get_object(Bucket=out["list_bucket_name"], Key="lists/incidents.txt")
    assert written["Body"].read() == b"91.92.240.5\n185.220.101.7\n"
    assert written["SSEKMSKeyId"] == out["kms_key_arn"]
    messages = STACK[0].client("sqs").receive_message(QueueUrl=out["reports_url"])["Messages"]
    report = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert report["detail"]["actions"][0].startswith("incidents: updated; 2 entries")


def test_second_plan_changes_nothing_but_what_moto_drops(threat_lists_apply: Any) -> None:
    changes = planned_changes(threat_lists_apply, ROOT_CONFIG)
    assert changes == {
        "module.threat_lists.aws_lambda_function.threat_feed[0]": {"update", "dead_letter_config"}
    }
