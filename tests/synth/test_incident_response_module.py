"""Assertions on the synthesised incident_response module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.common.permissions import actions
from functions.responder.permissions import ACTION_PERMISSIONS, PERMISSIONS
from modules.incident_response import ACTIONS, Action

pytestmark = pytest.mark.synth


@pytest.fixture(scope="module")
def module(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (dist / "modules" / "incident_response" / "main.tf.json").read_text()
    )
    return data


def test_every_action_target_is_offered_and_can_be_turned_off(module: dict[str, Any]) -> None:
    targets = module["resource"]["aws_securityhub_action_target"]
    assert set(targets) == {a.key for a in ACTIONS}
    for action in ACTIONS:
        target = targets[action.key]
        assert target["identifier"] == action.identifier
        assert f'var.create && contains(keys(local.offered), "{action.key}")' in target["count"]
        assert "var.create_action_targets" in target["count"]
    assert module["variable"]["actions"]["default"] == [a.key for a in ACTIONS]


def test_action_names_and_ids_fit_security_hub() -> None:
    assert all(len(a.name) <= 20 and len(a.identifier) <= 20 for a in ACTIONS)
    with pytest.raises(ValueError, match="over 20 characters"):
        Action("x", "X", "Send to Security Workflow", "", "notifier", "")
    with pytest.raises(ValueError, match="alphanumerics"):
        Action("x", "Send-To", "Send", "", "notifier", "")


def test_one_rule_per_answered_action_and_none_for_the_other_modules(
    module: dict[str, Any],
) -> None:
    rules = module["resource"]["aws_cloudwatch_event_rule"]
    answered = {f"{a.key}_rule" for a in ACTIONS if a.answered_by in ("responder", "notifier")}
    assert set(rules) == answered | {"automatic_rule"}
    pattern = rules["revoke_sessions_rule"]["event_pattern"]
    assert '"detail-type" = ["Security Hub Findings - Custom Action"]' in pattern
    assert 'source = ["aws.securityhub"]' in pattern
    assert "resources = [local.catalog.revoke_sessions.arn]" in pattern
    assert "var.create_automatic_responses" in rules["automatic_rule"]["count"]
    assert module["variable"]["create_automatic_responses"]["default"] is False


def test_send_actions_carry_their_routing_key_and_the_whole_event(module: dict[str, Any]) -> None:
    targets = module["resource"]["aws_cloudwatch_event_target"]
    for key, channel in (
        ("send_to_chat", "var.chat_channel"),
        ("send_to_email", '"email"'),
        ("send_to_workflow", '"workflow"'),
    ):
        target = targets[f"{key}_target"]
        assert target["arn"] == "${var.notifier_function_arn}"
        template = target["input_transformer"]["input_template"]
        assert f"channel = {channel}" in template
        assert template.endswith('"event": <aws.events.event.json>}')
    assert targets["disable_access_keys_target"]["arn"] == "${aws_lambda_function.responder[0].arn}"
    assert "input_transformer" not in targets["disable_access_keys_target"]


def test_send_actions_without_a_notifier_fail_the_plan(module: dict[str, Any]) -> None:
    preconditions = module["resource"]["aws_lambda_function"]["responder"]["lifecycle"][
        "precondition"
    ]
    assert any("notifier_function_arn" in p["error_message"] for p in preconditions)


def test_each_action_permission_list_is_declared() -> None:
    declared = actions(PERMISSIONS)
    for action, needed in ACTION_PERMISSIONS.items():
        assert set(needed) <= declared, action
    assert set(ACTION_PERMISSIONS) == {a.key for a in ACTIONS if a.answered_by == "responder"}


def test_the_readme_documents_every_action(dist: Path) -> None:
    readme = (dist / "modules" / "incident_response" / "README.md").read_text()
    assert "## Custom actions" in readme
    for action in ACTIONS:
        assert f"| {action.name} (`{action.identifier}`) | {action.who} |" in readme
    assert "`iam:UpdateAccessKey`" in readme
