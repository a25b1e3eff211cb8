"""The notifications module's hub mode (an organisation-wide EventBridge bus feeding the
topics) and member mode (forwarding findings and reports to it), and how an environment
with an ``organization`` wires them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bundle.module import declared_permissions
from functions.common import report
from modules import REGISTRY
from modules.notifications import FINDING_RULES, FORWARDED, REPORT_RULES

pytestmark = pytest.mark.synth


@pytest.fixture(scope="module")
def resources(dist: Path) -> dict[str, Any]:
    module = json.loads((dist / "modules" / "notifications" / "main.tf.json").read_text())
    return dict(module["resource"])


def test_hub_bus_admits_only_the_organisation(resources: dict[str, Any]) -> None:
    bus = resources["aws_cloudwatch_event_bus"]["hub"]
    assert bus["name"] == "${var.name_prefix}-hub"
    assert "var.hub_organization_id" in bus["count"]
    policy = resources["aws_cloudwatch_event_bus_policy"]["hub_policy"]["policy"]
    assert 'Principal = "*"' in policy and 'Action = "events:PutEvents"' in policy
    assert '"aws:PrincipalOrgID" = var.hub_organization_id' in policy
    assert policy.count("Sid =") == 1  # nothing else is granted


def test_hub_routes_forwarded_findings_and_reports_to_the_topics(
    resources: dict[str, Any],
) -> None:
    rules = resources["aws_cloudwatch_event_rule"]
    targets = resources["aws_cloudwatch_event_target"]
    for rule_id, (severity, _, _) in {**FINDING_RULES, **REPORT_RULES}.items():
        rule = rules[f"hub_{rule_id}"]
        assert rule["event_bus_name"] == "${aws_cloudwatch_event_bus.hub[0].name}"
        target = targets[f"hub_{rule_id}_target"]
        assert target["event_bus_name"] == rule["event_bus_name"]
        assert target["arn"] == f'${{aws_sns_topic.severity["{severity}"].arn}}'
        assert "dead_letter_config" in target and "retry_policy" in target
    # Patterns are jsonencode() expressions (the GuardDuty threshold is a variable).
    report = rules["hub_reports_high"]["event_pattern"]
    assert '"Playbook Remediation"' in report and '"HIGH"' in report


def test_member_forwards_findings_and_reports_through_a_scoped_role(
    resources: dict[str, Any],
) -> None:
    rule = resources["aws_cloudwatch_event_rule"]["forward_to_hub"]
    assert json.loads(rule["event_pattern"]) == FORWARDED
    assert "var.hub_event_bus_arn" in rule["count"]
    target = resources["aws_cloudwatch_event_target"]["forward_to_hub_target"]
    assert target["arn"] == "${var.hub_event_bus_arn}"
    assert target["role_arn"] == "${aws_iam_role.forward_to_hub_role[0].arn}"
    policy = resources["aws_iam_role_policy"]["forward_to_hub_policy"]["policy"]
    assert 'Action = "events:PutEvents", Resource = var.hub_event_bus_arn' in policy
    trust = json.loads(resources["aws_iam_role"]["forward_to_hub_role"]["assume_role_policy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}


def test_example_environment_wires_its_hub(dist: Path) -> None:
    """security-tooling is the example's hub account (us-east-1, its first region)."""
    folder = dist / "environments" / "example"
    calls = {
        stack.name: json.loads((stack / "main.tf.json").read_text())["module"]["notifications"]
        for stack in sorted(folder.iterdir())
    }
    assert calls["security-tooling-us-east-1"]["hub_organization_id"] == "o-a1b2c3d4e5"
    assert "hub_event_bus_arn" not in calls["security-tooling-us-east-1"]
    bus = "arn:aws:events:us-east-1:111111111111:event-bus/playbook-hub"
    for name in (
        "security-tooling-eu-west-1",
        "workloads-prod-us-east-1",
        "workloads-prod-eu-west-1",
    ):
        assert calls[name]["hub_event_bus_arn"] == bus
        assert "hub_organization_id" not in calls[name]


def test_no_default_bus_rule_routes_reports_into_a_topic(resources: dict[str, Any]) -> None:
    """Reports reach the member's topic by SNS only, so no rule on the default bus may route
    them there too (the hub's report rules are on the hub bus; the member rule forwards)."""
    rules = resources["aws_cloudwatch_event_rule"]
    for target_id, target in resources["aws_cloudwatch_event_target"].items():
        rule = rules[target_id.removesuffix("_target")]
        if "event_bus_name" in rule or "aws_sns_topic" not in target["arn"]:
            continue
        assert "Playbook Remediation" not in rule.get("event_pattern", ""), target_id
    assert "Playbook Remediation" in rules["forward_to_hub"]["event_pattern"]
    assert (
        "aws_sns_topic"
        not in resources["aws_cloudwatch_event_target"]["forward_to_hub_target"]["arn"]
    )


def test_reporting_remediators_put_reports_on_the_default_bus(dist: Path) -> None:
    """Every Lambda whose declared permissions put reports on the default bus gets the bus
    in its environment and that permission on that bus alone; no other Lambda gets either."""
    bus = (
        "arn:${data.aws_partition.partition.partition}:events:${data.aws_region.region.id}:"
        "${data.aws_caller_identity.current.account_id}:event-bus/default"
    )
    reporting = set()
    for module in REGISTRY:
        data = json.loads((dist / "modules" / module / "main.tf.json").read_text())
        for function in data["resource"].get("aws_lambda_function", {}):
            environment = data["locals"][f"{function}_environment"]
            policy = data["resource"]["aws_iam_role_policy"][f"{function}_policy"]["policy"]
            if report.PUT_EVENTS in declared_permissions(function):
                reporting.add(function)
                assert environment[report.EVENT_BUS_VARIABLE] == "default"
                assert (
                    '{Sid = "DeclaredDefaultEventBus", Effect = "Allow", '
                    f'Action = ["events:PutEvents"], Resource = ["{bus}"]}}'
                ) in policy
            else:
                assert report.EVENT_BUS_VARIABLE not in environment
                assert "events:PutEvents" not in policy
    assert reporting == {
        "waf_blocker", "nacl_blocker", "responder", "forensics", "threat_feed",
        "config_remediator",
    }  # fmt: skip
