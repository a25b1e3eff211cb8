"""Apply the generated nacl_blocklist module into a moto server with the real Terraform
CLI and AWS provider (pytest-terraform), around a VPC with two network ACLs; run the
nacl_blocker remediator against them; plan again (no drift); destroy.

What moto cannot do, and how this test handles it:
- Lambda invoke needs Docker: the handler runs in-process with the applied function's own
  environment, boto3 pointed at the same server.
- moto does not enforce the 20-entries-per-direction quota: the remediator enforces its
  capacity itself, and this test checks the count.
- moto drops Lambda DeadLetterConfig, so a second plan wants to set it again; that one
  difference is allowed, nothing else.
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
from functions.common.queue import sqs_batch
from tests.terraform.conftest import (
    MotoStack,
    finding,
    outputs,
    plan_fails,
    planned_changes,
    probe_rules,
)

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "nacl_blocklist_apply"
STACK: list[MotoStack] = []
RANGE = range(10, 15)


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> None:
    STACK[:] = [moto_stack]


# No teardown destroy: test_destroy_leaves_nothing destroys and checks, and the moto server
# (all that was applied) ends with the module; a second destroy would cost a provider run.
terraform("nacl_blocklist_apply", scope="module", teardown=terraform.TEARDOWN_OFF)


def entries(acl_id: str) -> list[dict[str, Any]]:
    acl = STACK[0].client("ec2").describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]
    return [e for e in acl["Entries"] if e["RuleNumber"] != 32767]


def denied(acl_id: str, egress: bool) -> dict[int, str]:
    return {
        e["RuleNumber"]: e.get("CidrBlock") or e.get("Ipv6CidrBlock")
        for e in entries(acl_id)
        if e["Egress"] is egress and e["RuleAction"] == "deny"
    }


def test_guards_acls_by_id_and_by_subnet(nacl_blocklist_apply: Any) -> None:
    out = outputs(nacl_blocklist_apply)
    assert sorted(out["guarded_network_acl_ids"]) == sorted([out["web_acl_id"], out["data_acl_id"]])
    function = (
        STACK[0]
        .client("lambda")
        .get_function_configuration(FunctionName=out["nacl_blocker_function_arn"])
    )
    variables = function["Environment"]["Variables"]
    assert sorted(json.loads(variables["NACL_IDS"])) == sorted(out["guarded_network_acl_ids"])
    assert json.loads(variables["DIRECTIONS"]) == ["ingress", "egress"]
    assert (variables["RULE_RANGE_START"], variables["RULE_RANGE_END"], variables["CAPACITY"]) == (
        "10",
        "14",
        "3",
    )
    policy = (
        STACK[0]
        .client("iam")
        .get_role_policy(RoleName="naclapply-nacl-blocker-us-east-1", PolicyName="least-privilege")
    )
    statements = policy["PolicyDocument"]["Statement"]
    scoped = next(s for s in statements if "ec2:CreateNetworkAclEntry" in s["Action"])
    assert sorted(scoped["Resource"]) == sorted(
        f"arn:aws:ec2:us-east-1:123456789012:network-acl/{acl}"
        for acl in out["guarded_network_acl_ids"]
    )


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            'extra_network_acl_ids=["acl-0123456789abcdef0"]',
            "network_acl_ids names a network ACL that does not exist in this account and region",
        ),
        (
            'extra_subnet_ids=["subnet-0123456789abcdef0"]',
            "A subnet in subnet_ids has no network ACL in this account and region",
        ),
    ],
)
def test_an_acl_or_subnet_that_is_not_here_fails_the_plan(
    nacl_blocklist_apply: Any, variable: str, message: str
) -> None:
    """An id of another region or account used to plan fine: the lookup came back empty,
    the policy fell back to every ACL of the account and the remediator guarded nothing."""
    assert message in plan_fails(nacl_blocklist_apply, ROOT_CONFIG, "-var", variable)


def test_remediator_blocks_evicts_and_expires(
    nacl_blocklist_apply: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from functions.common import aws
    from functions.nacl_blocker import handler, logic

    # Every report is put on the default bus too (functions/common/report.py), where moto
    # lets the schedule rule match every event and then fails on its Lambda target: the
    # rule gets a probe queue until the test ends.
    sweep_rule = probe_rules(STACK[0], ["naclapply-nacl-blocker-sweep"])
    request.addfinalizer(sweep_rule.restore)  # type: ignore[attr-defined]

    out = outputs(nacl_blocklist_apply)
    web, data = out["web_acl_id"], out["data_acl_id"]
    ec2 = STACK[0].client("ec2")
    # An entry in the reserved range that the remediator did not create: left alone.
    ec2.create_network_acl_entry(
        NetworkAclId=web,
        RuleNumber=14,
        Protocol="-1",
        RuleAction="deny",
        Egress=False,
        CidrBlock="203.0.113.7/32",
    )
    function = (
        STACK[0]
        .client("lambda")
        .get_function_configuration(FunctionName=out["nacl_blocker_function_arn"])
    )
    for name, value in function["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    aws.reset()
    now = [time.time()]
    clock = logic.Clock(now=lambda: now[0], sleep=lambda _: None)
    context: Any = InProcessContext.of(function["FunctionArn"])

    handler.lambda_handler(finding("gd_waf_ssh_bruteforce_inbound.json"), context, clock=clock)
    for acl in (web, data):
        assert "185.220.101.46/32" in denied(acl, egress=False).values()
        assert "185.220.101.46/32" in denied(acl, egress=True).values()
    # The next two arrive together, as the intake queue's event source mapping hands them
    # over (the mapping is applied; moto cannot run the function, so the batch is built
    # here from its queue's ARN).
    (mapping,) = (
        STACK[0]
        .client("lambda")
        .list_event_source_mappings(FunctionName=function["FunctionArn"])["EventSourceMappings"]
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    batch = sqs_batch(
        [finding("gd_waf_port_probe.json"), finding("gd_waf_iam_malicious_ip_caller_ipv6.json")],
        mapping["EventSourceArn"],
    )
    assert handler.lambda_handler(batch, context, clock=clock) == {"batchItemFailures": []}

    for acl in (web, data):
        for egress in (False, True):
            ours = {n: c for n, c in denied(acl, egress).items() if c != "203.0.113.7/32"}
            assert len(ours) <= 3, f"capacity is 3 per ACL and direction: {ours}"
            assert set(ours) <= set(RANGE), "never outside the reserved range"
            assert "45.155.205.233/32" not in ours.values(), "allow-listed"
    assert denied(web, egress=False)[14] == "203.0.113.7/32", "the foreign entry is untouched"
    allow = [e for e in entries(web) if e["RuleNumber"] == 100]
    assert allow and allow[0]["RuleAction"] == "allow", "the ACL's own rule is untouched"

    reports = (
        STACK[0]
        .client("sqs")
        .receive_message(QueueUrl=out["reports_url"], MaxNumberOfMessages=10, WaitTimeSeconds=2)
    )
    bodies = [json.loads(json.loads(m["Body"])["Message"]) for m in reports["Messages"]]
    assert {b["source"] for b in bodies} == {"playbook.nacl_blocker"}

    now[0] += 601  # past block_ttl_seconds
    handler.lambda_handler({"action": "sweep"}, context, clock=clock)
    assert denied(web, egress=False) == {14: "203.0.113.7/32"}, "only the foreign entry is left"
    assert denied(data, egress=False) == {} and denied(data, egress=True) == {}


def test_plan_after_apply_changes_nothing(nacl_blocklist_apply: Any) -> None:
    function = "module.nacl_blocklist.aws_lambda_function.nacl_blocker[0]"
    # moto returns a queue's RedrivePolicy as json.dumps with spaces, which the provider
    # plans as a whitespace change (a two-queue root against moto alone shows it); AWS
    # returns it compact.
    assert planned_changes(nacl_blocklist_apply, ROOT_CONFIG) == {
        function: {"update", "dead_letter_config"},
        "module.nacl_blocklist.aws_sqs_queue.nacl_blocker_intake[0]": {"update", "redrive_policy"},
    }


def test_destroy_leaves_nothing(nacl_blocklist_apply: Any) -> None:
    nacl_blocklist_apply.terraform.destroy()
    assert not STACK[0].client("dynamodb").list_tables()["TableNames"]
    assert not STACK[0].client("lambda").list_functions()["Functions"]
    assert not STACK[0].client("events").list_rules(NamePrefix="naclapply-")["Rules"]
    vpcs = (
        STACK[0]
        .client("ec2")
        .describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.42.0.0/16"]}])["Vpcs"]
    )
    assert not vpcs
