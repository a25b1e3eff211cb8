"""Apply the generated incident_response module into a moto server with the real Terraform
CLI and AWS provider (pytest-terraform), run the applied responder on the applied user and
role, check the rules route each custom action, plan the Security Hub action targets,
plan again, destroy.

What moto cannot do, and what this test does instead:
- Security Hub action targets are not implemented (and the provider's Security Hub calls
  retry against moto until they time out): the module is applied with
  ``create_action_targets = false`` and the targets are planned with it true (provider
  ``max_retries = 1``). Rules and ARNs do not depend on the targets: the ARNs are computed
  from account, region and id, as Security Hub assigns them.
- Lambda invoke needs Docker: the responder runs in-process with the applied function's
  own environment, against the moto server.
- BatchUpdateFindings is not implemented: a botocore hook answers it with the documented
  shape and records the request (the request itself is checked with Stubber in
  tests/unit/test_responder.py).
- moto's EventBridge does not deliver to Lambda targets and has no TestEventPattern: the
  rules' targets are swapped for an SQS probe (conftest.probe_rules), and the Send
  actions' input transformer is rendered here as EventBridge documents it.
- moto drops Lambda DeadLetterConfig, so a second plan wants to set it again; that is the
  only difference allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from pytest_terraform import terraform

from bundle.motoserver import InProcessContext, scoped_environ
from functions.notifier import routing
from tests.terraform.conftest import MotoStack, finding, outputs, planned_changes, probe_rules

pytestmark = pytest.mark.e2e

ROOT_CONFIG = Path(__file__).resolve().parent / "incident_response_apply"
STACK: list[MotoStack] = []
ACTIONS = (
    "isolate_instance",
    "terminate_instance",
    "disable_access_keys",
    "revoke_sessions",
    "block_ip",
    "send_to_chat",
    "send_to_email",
    "send_to_workflow",
)
HUB = "arn:aws:securityhub:us-east-1:123456789012"


@pytest.fixture(scope="module", autouse=True)
def moto_environment(moto_stack: MotoStack) -> Iterator[None]:
    STACK[:] = [moto_stack]
    yield


# No teardown destroy: test_destroy_leaves_nothing destroys and checks, and the moto server
# (all that was applied) ends with the module; a second destroy would cost a provider run.
terraform("incident_response_apply", scope="module", teardown=terraform.TEARDOWN_OFF)


def client(service: str) -> Any:
    return STACK[0].client(service)


def custom_action(name: str, action_arn: str) -> dict[str, Any]:
    event = finding(name)
    event["resources"] = [action_arn]
    event["account"] = "123456789012"
    for item in event["detail"]["findings"]:
        item["AwsAccountId"] = "123456789012"
    return event


def test_applied_actions_rules_and_outputs(incident_response_apply: Any) -> None:
    out = outputs(incident_response_apply)
    identifiers = {
        "isolate_instance": "IsolateInstance",
        "terminate_instance": "TerminateInstance",
        "disable_access_keys": "DisableAccessKeys",
        "revoke_sessions": "RevokeSessions",
        "block_ip": "BlockIp",
        "send_to_chat": "SendToChat",
        "send_to_email": "SendToEmail",
        "send_to_workflow": "SendToWorkflow",
    }
    assert out["action_arns"] == {
        key: f"{HUB}:action/custom/{identifier}" for key, identifier in identifiers.items()
    }
    assert out["block_ip_action_arn"] == f"{HUB}:action/custom/BlockIp"
    assert out["isolate_action_arn"] == f"{HUB}:action/custom/IsolateInstance"
    assert out["terminate_action_arn"] == f"{HUB}:action/custom/TerminateInstance"
    # One rule per action this module answers; Isolate, Terminate and Block IP belong to
    # the modules that do the work (forensics, the blockers).
    rules = out["event_rule_arns"]
    assert set(rules) == {
        "disable_access_keys",
        "revoke_sessions",
        "send_to_chat",
        "send_to_email",
        "send_to_workflow",
        "automatic",
    }
    events = client("events")
    for key in ("disable_access_keys", "send_to_workflow"):
        name = rules[key].rsplit("/", 1)[-1]
        pattern = json.loads(events.describe_rule(Name=name)["EventPattern"])
        assert pattern == {
            "source": ["aws.securityhub"],
            "detail-type": ["Security Hub Findings - Custom Action"],
            "resources": [out["action_arns"][key]],
        }
    function = client("lambda").get_function_configuration(
        FunctionName=out["responder_function_arn"]
    )
    environment = function["Environment"]["Variables"]
    assert (
        environment["DISABLE_ACCESS_KEYS_ACTION_ARN"] == out["action_arns"]["disable_access_keys"]
    )
    assert environment["REVOKE_SESSIONS_ACTION_ARN"] == out["action_arns"]["revoke_sessions"]
    assert json.loads(environment["AUTOMATIC_FINDING_TYPES"]) == [
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS",
    ]
    policy = client("iam").get_role_policy(
        RoleName="irapply-responder-us-east-1", PolicyName="least-privilege"
    )["PolicyDocument"]
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["DeclaredUsers"] == ["arn:aws:iam::123456789012:user/irapply-ci-deployer"]
    assert resources["DeclaredRoles"] == ["arn:aws:iam::123456789012:role/irapply-web"]
    assert resources["DeclaredHub"] == [f"{HUB}:hub/default"]


def test_rules_route_each_action_and_refuse_other_sources(incident_response_apply: Any) -> None:
    out = outputs(incident_response_apply)
    names = {key: arn.rsplit("/", 1)[-1] for key, arn in out["event_rule_arns"].items()}
    routed = probe_rules(STACK[0], list(names.values()))
    try:
        for key in ("disable_access_keys", "revoke_sessions", "send_to_email"):
            event = custom_action(
                "securityhub_action_revoke_sessions.json", out["action_arns"][key]
            )
            assert routed(event) == {names[key]}
        isolate = custom_action(
            "securityhub_action_revoke_sessions.json", out["isolate_action_arn"]
        )
        assert routed(isolate) == set(), "forensics owns the Isolate rule"
        spoofed = custom_action(
            "securityhub_action_revoke_sessions.json", out["action_arns"]["revoke_sessions"]
        )
        spoofed["source"] = "custom.attacker"
        assert routed(spoofed) == set()
        assert routed(finding("gd_responder_instance_credential_exfiltration.json")) == {
            names["automatic"]
        }
    finally:
        routed.restore()  # type: ignore[attr-defined]


def test_send_actions_wrap_the_event_in_the_routing_key_the_notifier_reads(
    incident_response_apply: Any,
) -> None:
    out = outputs(incident_response_apply)
    events = client("events")
    event = custom_action(
        "securityhub_findings_custom_action.json", out["action_arns"]["send_to_chat"]
    )
    for key, channel, audience in (
        ("send_to_chat", "slack", "#incident-response"),
        ("send_to_email", "email", "security team"),
        ("send_to_workflow", "workflow", "security workflow"),
    ):
        rule = out["event_rule_arns"][key].rsplit("/", 1)[-1]
        (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert target["Arn"].endswith(":function:irapply-notifier")
        template = target["InputTransformer"]["InputTemplate"]
        # EventBridge puts the whole event, unescaped, where <aws.events.event.json> stands.
        rendered = json.loads(template.replace("<aws.events.event.json>", json.dumps(event)))
        route = routing.parse_route(rendered)
        assert (route.channel, route.audience) == (channel, audience)
        assert len(route.findings) == 2


def test_the_applied_responder_disables_the_key_and_revokes_the_role(
    incident_response_apply: Any,
) -> None:
    out = outputs(incident_response_apply)
    function = client("lambda").get_function_configuration(
        FunctionName=out["responder_function_arn"]
    )
    disable = custom_action(
        "securityhub_action_disable_access_keys.json", out["action_arns"]["disable_access_keys"]
    )
    disable["detail"]["findings"] = disable["detail"]["findings"][:1]
    resource = disable["detail"]["findings"][0]["Resources"][0]
    resource["Id"] = f"AWS::IAM::AccessKey:{out['access_key_id']}"
    resource["Details"]["AwsIamAccessKey"]["PrincipalName"] = "irapply-ci-deployer"
    revoke = custom_action(
        "securityhub_action_revoke_sessions.json", out["action_arns"]["revoke_sessions"]
    )
    revoke["detail"]["findings"] = revoke["detail"]["findings"][:1]
    revoke["detail"]["findings"][0]["Resources"][0]["Details"]["AwsIamAccessKey"][
        "PrincipalName"
    ] = "irapply-web"

    from functions.common import aws
    from functions.responder import handler

    updates: list[dict[str, Any]] = []

    def batch_update_findings(params: dict[str, Any], **_: Any) -> Any:
        updates.append(json.loads(params.get("body") or b"{}"))
        return AWSResponse(f"{STACK[0].endpoint}/findings/batchupdate", 200, {}, None), {
            "ProcessedFindings": [],
            "UnprocessedFindings": [],
        }

    aws.reset()
    aws.session().events.register(
        "before-call.securityhub.BatchUpdateFindings",
        batch_update_findings,
        unique_id="tests-batch-update-findings",
    )
    context: Any = InProcessContext.of(function["FunctionArn"])
    try:
        with scoped_environ(function["Environment"]["Variables"]):
            first = handler.lambda_handler(disable, context)
            second = handler.lambda_handler(revoke, context)
    finally:
        aws.reset()

    assert first["findings"][0]["status"] == "done", first
    assert second["findings"][0]["status"] == "done", second
    (key,) = client("iam").list_access_keys(UserName="irapply-ci-deployer")["AccessKeyMetadata"]
    assert key["Status"] == "Inactive"
    policy = client("iam").get_role_policy(
        RoleName="irapply-web", PolicyName="AWSRevokeOlderSessions"
    )
    assert policy["PolicyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert [u["Workflow"] for u in updates] == [{"Status": "NOTIFIED"}] * 2
    reports = client("sqs").receive_message(
        QueueUrl=out["reports_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    titles = sorted(
        json.loads(json.loads(m["Body"])["Message"])["detail"]["title"] for m in reports["Messages"]
    )
    assert titles == [
        "Disable Access Keys: 1 of 1 findings acted on",
        "Revoke Sessions: 1 of 1 findings acted on",
    ]


def test_plan_after_apply_adds_only_the_action_targets(incident_response_apply: Any) -> None:
    """moto has no action targets: they are planned (no Security Hub call is made at plan),
    in the same plan that shows the applied resources need nothing else."""
    changes = planned_changes(
        incident_response_apply, ROOT_CONFIG, "-var=create_action_targets=true"
    )
    planned = {
        address: change
        for address, change in changes.items()
        if "aws_securityhub_action_target" in address
    }
    assert set(planned) == {
        f"module.incident_response.aws_securityhub_action_target.{key}[0]" for key in ACTIONS
    }
    assert all("create" in change for change in planned.values())
    others = {a: c for a, c in changes.items() if a not in planned}
    assert others == {
        # moto drops the Lambda DeadLetterConfig (see the module docstring).
        "module.incident_response.aws_lambda_function.responder[0]": {
            "update",
            "dead_letter_config",
        },
        # The responder deactivated the key this configuration manages as Active: the next
        # apply would turn it back on (README and the module's Limits say so).
        "aws_iam_access_key.leaked": {"update", "status"},
    }


def test_destroy_leaves_nothing(incident_response_apply: Any) -> None:
    incident_response_apply.terraform.destroy()
    rules = client("events").list_rules(NamePrefix="irapply-")["Rules"]
    assert rules == []
    functions = client("lambda").list_functions()["Functions"]
    assert [f for f in functions if f["FunctionName"].startswith("irapply-responder")] == []
