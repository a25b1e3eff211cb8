"""Apply the generated waf_shield module into a moto server with the real Terraform CLI
and AWS provider (pytest-terraform), run the waf_blocker remediator against the applied
resources, plan again (no drift; Shield Advanced planned), then destroy.

What moto cannot do, and how this test handles it:
- Lambda invoke needs Docker: the handler runs in-process with the applied function's own
  environment, boto3 pointed at the same server.
- EventBridge in moto delivers neither to Lambda nor to SNS targets and has no
  TestEventPattern: the rules' patterns run through moto's matcher with SQS probe targets.
  It does deliver to the blocker's intake queue, and moto's event source mapping invokes
  the function as a message arrives: that invoke is routed to the handler in-process.
- moto has no Shield Advanced: Shield protections are planned, not applied.
- moto rejects unknown layer ARNs: the root configuration publishes a stand-in layer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_terraform import terraform

from bundle.motoserver import InProcessContext
from bundle.motoworkflow import lambda_runs_in_process
from tests.terraform.conftest import (
    MotoStack,
    finding,
    outputs,
    plan_fails,
    planned_changes,
    probe_rules,
)

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "waf_shield_apply"
STACK: list[MotoStack] = []


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> None:
    STACK[:] = [moto_stack]


# No teardown destroy: test_destroy_leaves_nothing destroys and checks, and the moto server
# (all that was applied) ends with the module; a second destroy would cost a provider run.
terraform("waf_shield_apply", scope="module", teardown=terraform.TEARDOWN_OFF)


def client(service: str) -> Any:
    return STACK[0].client(service)


def web_acl(arn: str) -> dict[str, Any]:
    name, acl_id = arn.split("/")[-2:]
    acl: dict[str, Any] = client("wafv2").get_web_acl(Name=name, Scope="REGIONAL", Id=acl_id)[
        "WebACL"
    ]
    return acl


def ip_set(arn: str) -> list[str]:
    name, set_id = arn.split("/")[-2:]
    found = client("wafv2").get_ip_set(Name=name, Scope="REGIONAL", Id=set_id)["IPSet"]
    return sorted(found["Addresses"])


def test_web_acl_rules_in_priority_order(waf_shield_apply: Any) -> None:
    acl = web_acl(outputs(waf_shield_apply)["web_acl_arn"])
    rules = {r["Name"]: r for r in acl["Rules"]}
    # allowlist_bypass_enabled is off: no Allow rule; the blocklists exempt the allowlist.
    assert {name: rule["Priority"] for name, rule in rules.items()} == {
        "blocklist-ipv4": 2,
        "blocklist-ipv6": 3,
        "rate-per-ip": 10,
        "login": 11,
        "edge-countries": 12,
        "AWS-AWSManagedRulesCommonRuleSet": 100,
        "AWS-AWSManagedRulesKnownBadInputsRuleSet": 101,
    }
    assert "Block" in rules["blocklist-ipv6"]["Action"]
    blocked, exempt = rules["blocklist-ipv4"]["Statement"]["AndStatement"]["Statements"]
    allowlist = exempt["NotStatement"]["Statement"]["IPSetReferenceStatement"]["ARN"]
    assert "allowlist-ipv4" in allowlist and "blocklist-ipv4" in str(blocked)
    assert not any(rule["VisibilityConfig"]["SampledRequestsEnabled"] for rule in acl["Rules"]), (
        "sampled requests show redacted headers: off unless asked for"
    )
    login = rules["login"]["Statement"]["RateBasedStatement"]
    assert login["Limit"] == 100 and login["EvaluationWindowSec"] == 60
    match = login["ScopeDownStatement"]["ByteMatchStatement"]
    assert match["PositionalConstraint"] == "STARTS_WITH"
    assert [
        t["Type"] for t in sorted(match["TextTransformations"], key=lambda t: t["Priority"])
    ] == [
        "URL_DECODE",
        "NORMALIZE_PATH",
        "LOWERCASE",
    ], "/Login, //login and %2Flogin must not skip the login rule"
    edge = rules["edge-countries"]
    assert "Count" in edge["Action"]
    statement = edge["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "FORWARDED_IP"
    assert statement["ForwardedIPConfig"]["HeaderName"] == "X-Forwarded-For"
    assert statement["ScopeDownStatement"]["GeoMatchStatement"]["CountryCodes"] == ["US", "DE"]
    managed = rules["AWS-AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert managed["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}
    ]


def test_the_web_acl_protects_a_load_balancer_created_in_the_same_apply(
    waf_shield_apply: Any,
) -> None:
    out = outputs(waf_shield_apply)
    protected = client("wafv2").get_web_acl_for_resource(ResourceArn=out["load_balancer_arn"])
    assert protected["WebACL"]["ARN"] == out["web_acl_arn"]


def test_lists_logging_and_state(waf_shield_apply: Any) -> None:
    out = outputs(waf_shield_apply)
    allow_v4, allow_v6 = sorted(out["allowlist_ip_set_arns"], key=lambda a: "ipv6" in a)
    assert ip_set(allow_v4) == ["198.51.100.0/24", "45.155.205.0/24"]
    assert ip_set(allow_v6) == ["2001:db8:100::/48"]
    assert ip_set(out["blocklist_ipv4_ip_set_arn"]) == []
    logging = client("wafv2").get_logging_configuration(ResourceArn=out["web_acl_arn"])
    config = logging["LoggingConfiguration"]
    assert config["LogDestinationConfigs"] == [out["log_group_arn"]]
    assert out["log_group_arn"].split(":")[-1].startswith("aws-waf-logs-")
    redacted = json.dumps(config["RedactedFields"]).lower()
    assert "authorization" in redacted and "cookie" in redacted
    ttl = client("dynamodb").describe_time_to_live(TableName=out["state_table_name"])
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }


def test_findings_rule_matches_the_catalog(waf_shield_apply: Any) -> None:
    rule = "wafapply-waf-blocker-findings"
    # moto lets a schedule rule (it has no pattern) match every event and then fails on
    # its Lambda target, so the sweep rule is swapped to a probe too and not asserted on.
    routed = probe_rules(STACK[0], [rule, "wafapply-waf-blocker-sweep"])
    try:
        # GuardDuty rates an inbound SSH brute force Low (2.0): the default threshold (1)
        # lets it through, the catalog decides that its remote party is the attacker.
        assert rule in routed(finding("gd_waf_ssh_bruteforce_inbound.json"))
        assert rule not in routed(finding("gd_waf_ssh_bruteforce_inbound.json", severity=0.5))
        other_type = finding(
            "gd_waf_ssh_bruteforce_inbound.json", type="Backdoor:EC2/C&CActivity.B"
        )
        assert rule not in routed(other_type)
    finally:
        routed.restore()  # type: ignore[attr-defined]


def test_remediator_blocks_reports_and_expires(
    waf_shield_apply: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from functions.common import aws
    from functions.waf_blocker import handler, logic

    out = outputs(waf_shield_apply)
    function = client("lambda").get_function_configuration(
        FunctionName=out["waf_blocker_function_arn"]
    )
    for name, value in function["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    aws.reset()
    now = [time.time()]
    clock = logic.Clock(now=lambda: now[0], sleep=lambda _: None)

    context: Any = InProcessContext.of(function["FunctionArn"])

    # The first finding travels as in AWS: the bus, the findings rule, the intake queue and
    # its event source mapping, whose Lambda invoke (moto makes it as the message arrives)
    # runs the handler here.
    (mapping,) = client("lambda").list_event_source_mappings(FunctionName=function["FunctionArn"])[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"].endswith(":wafapply-waf-blocker-intake")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 100
    ssh = finding("gd_waf_ssh_bruteforce_inbound.json")
    results: list[Any] = []

    def run(event: dict[str, Any]) -> Any:
        # moto's EventBridge leaves `account` out of what it puts on an SQS target (keys:
        # version, id, detail-type, source, time, region, resources, detail); AWS always
        # sends it, and the handler rejects an event without it. Put it back.
        for record in event["Records"]:
            body = json.loads(record["body"])
            record["body"] = json.dumps({"account": ssh["account"], **body})
        results.append(handler.lambda_handler(event, context, clock=clock))
        return results[-1]

    # moto lets the schedule rule match every event and fails on its Lambda target: it
    # gets a probe until the test ends (see test_findings_rule_matches_the_catalog), since
    # every report the handler sends is put on the default bus too (functions/common/report.py).
    sweep = probe_rules(STACK[0], ["wafapply-waf-blocker-sweep"])
    request.addfinalizer(sweep.restore)  # type: ignore[attr-defined]
    with lambda_runs_in_process({function["FunctionName"]: run}) as invocations:
        sweep(ssh)
    (batch,) = invocations
    (record,) = batch["Records"]
    assert record["eventSourceARN"] == mapping["EventSourceArn"]
    assert json.loads(record["body"])["detail"]["id"] == ssh["detail"]["id"]
    assert results == [{"batchItemFailures": []}]
    assert ip_set(out["blocklist_ipv4_ip_set_arn"]) == ["185.220.101.46/32"]
    result = handler.lambda_handler(finding("gd_waf_port_probe.json"), context, clock=clock)
    assert "45.155.205.233" in {r["address"] for r in result["rejected"]}, "allow-listed"
    result = handler.lambda_handler(
        finding("gd_waf_iam_malicious_ip_caller_ipv6.json"), context, clock=clock
    )
    assert ip_set(out["blocklist_ipv6_ip_set_arn"]) == ["2a01:4f8:c17:2a45::1/128"]
    assert ip_set(out["blocklist_ipv4_ip_set_arn"]) == [
        "185.220.101.46/32",
        "80.82.77.139/32",
        "91.240.118.172/32",
    ]

    messages = client("sqs").receive_message(
        QueueUrl=out["reports_url"], MaxNumberOfMessages=10, WaitTimeSeconds=2
    )
    reports = [json.loads(json.loads(m["Body"])["Message"]) for m in messages["Messages"]]
    assert {r["source"] for r in reports} == {"playbook.waf_blocker"}
    assert any("185.220.101.46/32" in " ".join(r["detail"]["actions"]) for r in reports)

    now[0] += 601  # past block_ttl_seconds
    result = handler.lambda_handler({"action": "sweep"}, context, clock=clock)
    assert len(result["expired"]) == 4
    assert ip_set(out["blocklist_ipv4_ip_set_arn"]) == []
    assert ip_set(out["blocklist_ipv6_ip_set_arn"]) == []


def test_plan_after_apply_changes_nothing_and_plans_shield(waf_shield_apply: Any) -> None:
    # The remediator's own edits to the blocklists are not drift (ignore_changes). The
    # one difference allowed is moto's: it drops Lambda DeadLetterConfig, so the provider
    # wants to set it again.
    function = "module.waf_shield.aws_lambda_function.waf_blocker[0]"
    # moto returns a queue's RedrivePolicy as json.dumps with spaces, which the provider
    # plans as a whitespace change (a two-queue root against moto alone shows it); AWS
    # returns it compact.
    assert planned_changes(waf_shield_apply, ROOT_CONFIG) == {
        function: {"update", "dead_letter_config"},
        "module.waf_shield.aws_sqs_queue.waf_blocker_intake[0]": {"update", "redrive_policy"},
    }
    shield = planned_changes(waf_shield_apply, ROOT_CONFIG, "-var", "shield=true")
    for name in ("web", "static"):
        assert shield.pop(f'module.waf_shield.aws_shield_protection.shield["{name}"]') >= {"create"}
    assert shield.pop("module.waf_shield.aws_shield_protection_group.shield_group[0]") >= {"create"}
    response = (
        "module.waf_shield.aws_shield_application_layer_automatic_response"
        '.shield_auto_mitigation["web"]'
    )
    assert shield.pop(response) >= {"create"}
    assert shield == {
        function: {"update", "dead_letter_config"},
        "module.waf_shield.aws_sqs_queue.waf_blocker_intake[0]": {"update", "redrive_policy"},
    }, "nothing else changes"


def test_mitigation_of_a_resource_without_this_web_acl_fails_the_plan(
    waf_shield_apply: Any,
) -> None:
    """Shield's automatic mitigation writes rules into the resource's web ACL; for a
    protected load balancer that does not use this one, AWS would refuse at apply."""
    output = plan_fails(
        waf_shield_apply, ROOT_CONFIG, "-var", "shield=true", "-var", "mitigate_unassociated=true"
    )
    assert "must also be in associated_resource_arns" in output


def test_destroy_leaves_nothing(waf_shield_apply: Any) -> None:
    waf_shield_apply.terraform.destroy()
    wafv2 = client("wafv2")
    assert not wafv2.list_web_acls(Scope="REGIONAL")["WebACLs"]
    assert not wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"]
    assert not client("dynamodb").list_tables()["TableNames"]
    assert not client("lambda").list_functions()["Functions"]
    assert not client("events").list_rules(NamePrefix="wafapply-")["Rules"]
    assert not client("logs").describe_log_groups(logGroupNamePrefix="aws-waf-logs-wafapply")[
        "logGroups"
    ]
