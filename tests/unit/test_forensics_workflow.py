"""The isolation state machine's definition, checked by a real Amazon States Language
validator (asl-validator from the npm registry, installed by scripts/setup.sh into
.tools/asl), and its wiring to the step function.

Executions themselves run in tests/unit/test_forensics.py, in moto's Step Functions
interpreter (moto 5.2 executes a definition only with ``execute_state_machine``; its
Lambda tasks reach the real handler through bundle/motoworkflow.py).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bundle.paths import ROOT
from functions.forensics import logic, workflow

pytestmark = pytest.mark.unit

VALIDATOR = ROOT / ".tools" / "asl" / "node_modules" / ".bin" / "asl-validator"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:playbook-forensics"


def validate(definition: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert VALIDATOR.exists(), "asl-validator is missing: run `make setup`"
    assert shutil.which("node"), "node is missing: run `make setup`"
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    return subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_definition_is_valid_amazon_states_language(tmp_path: Path) -> None:
    result = validate(workflow.definition(FUNCTION_ARN), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


def test_the_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    """The validator really checks: a transition to a missing state is refused."""
    broken = copy.deepcopy(workflow.definition(FUNCTION_ARN))
    broken["States"]["Accepted?"]["Default"] = "Nowhere"
    result = validate(broken, tmp_path)
    assert result.returncode != 0
    assert "MISSING_TRANSITION_TARGET" in result.stdout + result.stderr


def _tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for state in states.values():
        if state["Type"] == "Task":
            found.append(state)
        if state["Type"] == "Map":
            found += _tasks(state["ItemProcessor"]["States"])
    return found


def test_every_task_runs_a_step_the_handler_knows() -> None:
    tasks = _tasks(workflow.definition(FUNCTION_ARN)["States"])
    steps = {task["Parameters"]["Payload"]["step"] for task in tasks}
    assert steps == set(logic.STEP_NAMES)
    for task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke"
        assert task["Parameters"]["FunctionName"] == FUNCTION_ARN
        retried = task["Retry"][0]["ErrorEquals"]
        assert "Lambda.TooManyRequestsException" in retried


def test_every_isolation_step_is_caught_and_the_swap_rolls_back() -> None:
    states = workflow.definition(FUNCTION_ARN)["States"]["Each instance"]["ItemProcessor"]["States"]
    for step, name in workflow.STATE_NAMES.items():
        catch = states[name].get("Catch")
        assert catch and catch[0]["ErrorEquals"] == ["States.ALL"], name
        if step == "isolate_network":
            assert catch[0]["Next"] == "Restore security groups"
    (waiting,) = [
        r for r in states["Terminate instance"]["Retry"] if r["ErrorEquals"] == ["EvidencePending"]
    ]
    assert waiting["IntervalSeconds"] * waiting["MaxAttempts"] >= 3600, "large volumes take hours"


def test_order_of_the_steps() -> None:
    states = workflow.definition(FUNCTION_ARN)["States"]["Each instance"]["ItemProcessor"]["States"]
    order, name = [], "Start case"
    while name in states and len(order) < 30:
        state = states[name]
        if state["Type"] == "Task":
            order.append(state["Parameters"]["Payload"]["step"])
        name = state.get("Next") or state.get("Default") or ""
    assert order == [
        "protect",
        "contain",
        "capture_volatile",
        "snapshot",
        "revoke_credentials",
        "isolate_network",
        "copy_snapshots",
        "report",
    ]
