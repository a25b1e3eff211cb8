"""Apply the generated config_rules module into a moto server with the real Terraform CLI
and AWS provider (pytest-terraform): recorder, delivery channel and bucket, the catalog
rules, the dangling-dns rule and its Lambda, the compliance-change wiring; then run the
remediator against the applied security group with the applied function's environment,
plan again (no drift) and destroy.

What moto cannot do, and how this test handles it:
- moto has no PutOrganizationConfigRule: organisation rules are planned, not applied.
- moto has no Config remediation configurations (the module uses none: EventBridge and
  the remediator do the remediation, so nothing here depends on them).
- Lambda invoke needs Docker: the handler runs in-process with the applied function's own
  environment, boto3 pointed at the same server.
- moto drops Lambda DeadLetterConfig, so a second plan wants to set it again; that one
  difference is allowed, nothing else.
- moto rejects unknown layer ARNs: the root configuration publishes a stand-in layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_terraform import terraform

from bundle.motoserver import InProcessContext
from modules.config_rules_catalog import CATALOG
from tests.terraform.conftest import (
    EVENTS,
    MotoStack,
    outputs,
    plan_fails,
    planned_changes,
    probe_rules,
)

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "config_rules_apply"
STACK: list[MotoStack] = []
PREFIX = "cfgapply"
REVOKED = "aws_vpc_security_group_ingress_rule.web_ssh_world"


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> None:
    STACK[:] = [moto_stack]


terraform("config_rules_apply", scope="module", teardown=terraform.TEARDOWN_ON)


def compliance_change(rule: str, group: str, compliance: str = "NON_COMPLIANT") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "config_rules_compliance_change.json").read_text())
    event["detail"].update(
        configRuleName=rule, resourceType="AWS::EC2::SecurityGroup", resourceId=group
    )
    event["detail"]["newEvaluationResult"]["complianceType"] = compliance
    return event


def test_rules_follow_the_catalog_and_the_overrides(config_rules_apply: Any) -> None:
    config = STACK[0].client("config")
    rules = {r["ConfigRuleName"]: r for r in config.describe_config_rules()["ConfigRules"]}
    expected = {k for k, rule in CATALOG.items() if rule.enabled} - {"alb-waf-enabled"}
    expected |= {"approved-amis-by-id"}
    managed = {
        n.removeprefix(f"{PREFIX}-") for n, r in rules.items() if r["Source"]["Owner"] == "AWS"
    }
    assert managed == expected
    for key in expected:
        rule = rules[f"{PREFIX}-{key}"]
        assert rule["Source"]["SourceIdentifier"] == CATALOG[key].source
    assert json.loads(rules[f"{PREFIX}-access-keys-rotated"]["InputParameters"]) == {
        "maxAccessKeyAge": "45"
    }
    assert json.loads(rules[f"{PREFIX}-restricted-rdp"]["InputParameters"]) == {
        f"blockedPort{n}": "3389" for n in range(1, 6)
    }
    custom = rules[f"{PREFIX}-dangling-dns"]
    out = outputs(config_rules_apply)
    assert custom["Source"]["Owner"] == "CUSTOM_LAMBDA"
    assert custom["Source"]["SourceIdentifier"] == out["dangling_dns_function_arn"]
    assert custom["Source"]["SourceDetails"][0]["MessageType"] == "ScheduledNotification"
    recorders = config.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert [(r["name"], r["recording"]) for r in recorders] == [(f"{PREFIX}-recorder", True)]
    (channel,) = config.describe_delivery_channels()["DeliveryChannels"]
    assert channel["s3BucketName"] == out["delivery_bucket_name"]
    assert channel["s3KmsKeyArn"].startswith("arn:aws:kms:")


def test_remediator_environment_lists_only_rules_with_a_fix(config_rules_apply: Any) -> None:
    out = outputs(config_rules_apply)
    function = (
        STACK[0]
        .client("lambda")
        .get_function_configuration(FunctionName=out["config_remediator_function_arn"])
    )
    rules = json.loads(function["Environment"]["Variables"]["RULES"])
    with_fix = {k for k, rule in CATALOG.items() if rule.enabled and rule.remediation}
    assert set(rules) == {f"{PREFIX}-{k}" for k in with_fix}
    assert rules[f"{PREFIX}-restricted-ssh"]["auto_remediate"] is True
    assert rules[f"{PREFIX}-access-keys-rotated"] == {
        "action": "deactivate_old_access_keys",
        "auto_remediate": False,
        "parameters": {"maxAccessKeyAge": "45"},
    }


def test_non_compliant_change_is_routed_and_fixed(
    config_rules_apply: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.common import aws
    from functions.config_remediator import handler

    out = outputs(config_rules_apply)
    group = out["web_group_id"]
    rule_name = out["event_rule_arn"].rsplit("/", 1)[-1]
    routed = probe_rules(STACK[0], [rule_name])
    try:
        assert routed(compliance_change(f"{PREFIX}-restricted-ssh", group)) == {rule_name}
        assert routed(
            compliance_change(f"OrgConfigRule-{PREFIX}-restricted-ssh-a1b2c3d4", group)
        ) == {rule_name}
        assert routed(compliance_change(f"{PREFIX}-restricted-ssh", group, "COMPLIANT")) == set()
        # A rule without a fix is left to the notifications module.
        assert routed(compliance_change(f"{PREFIX}-encrypted-volumes", group)) == set()
    finally:
        routed.restore()  # type: ignore[attr-defined]

    function = (
        STACK[0]
        .client("lambda")
        .get_function_configuration(FunctionName=out["config_remediator_function_arn"])
    )
    for name, value in function["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    aws.reset()
    try:
        result = handler.lambda_handler(
            compliance_change(f"{PREFIX}-restricted-ssh", group),
            InProcessContext.of(out["config_remediator_function_arn"]),
        )
    finally:
        aws.reset()
    assert result["status"] == "remediated", result
    ec2 = STACK[0].client("ec2")
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    left = {(p["FromPort"], r["CidrIp"]) for p in described["IpPermissions"] for r in p["IpRanges"]}
    assert left == {(22, "198.51.100.0/24"), (443, "0.0.0.0/0")}
    sqs = STACK[0].client("sqs")
    messages = sqs.receive_message(QueueUrl=out["reports_url"], WaitTimeSeconds=1)["Messages"]
    report = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert report["detail"]["title"].endswith("remediated")


def test_organisation_rules_are_planned(config_rules_apply: Any) -> None:
    """moto has no PutOrganizationConfigRule: the switch is planned only."""
    changes = planned_changes(
        config_rules_apply, ROOT_CONFIG, "-refresh=false", "-var", "organization_rules=true"
    )
    changes.pop(REVOKED, None)
    created = {a for a, c in changes.items() if "create" in c}
    destroyed = {a for a, c in changes.items() if "delete" in c}
    expected = {k for k, rule in CATALOG.items() if rule.enabled} - {"alb-waf-enabled"}
    expected |= {"approved-amis-by-id"}
    assert created == {
        f'module.config_rules.aws_config_organization_managed_rule.organization["{k}"]'
        for k in expected
    }
    assert destroyed == {
        f'module.config_rules.aws_config_config_rule.managed["{k}"]' for k in expected
    }


def test_unknown_rule_or_parameter_fails_the_plan(config_rules_apply: Any) -> None:
    message = plan_fails(
        config_rules_apply,
        ROOT_CONFIG,
        "-refresh=false",
        "-var",
        'extra_rules={"no-such-rule"={enabled=true}}',
    )
    assert "Every key of rules must be a catalog rule" in message
    message = plan_fails(
        config_rules_apply,
        ROOT_CONFIG,
        "-refresh=false",
        "-var",
        'extra_rules={"restricted-ssh"={parameters={maxAccessKeyAge="1"}}}',
    )
    assert "not one the managed rule accepts" in message


def test_second_plan_is_clean(config_rules_apply: Any) -> None:
    changes = planned_changes(config_rules_apply, ROOT_CONFIG)
    # The remediator revoked world SSH on purpose: a configuration that declares it puts
    # it back, which is what Config reports again (and the remediator fixes again).
    assert "create" in changes.pop(REVOKED)
    drift = {
        address: change
        for address, change in changes.items()
        if change != {"update", "dead_letter_config"}
    }
    assert drift == {}, drift
