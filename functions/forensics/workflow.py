"""The isolation workflow as an Amazon States Language definition: the one source the
Terraform module, the tests and the demo all use.

Shape (JSONPath): ``Normalise`` turns the start event into targets or a rejection; an
inline ``Map`` runs the isolation steps for each instance; every step is a
``lambda:invoke`` task of the one step function with ``{"step": <name>, "target": ...}``,
its result kept at ``$.steps.<name>`` (so the execution history shows each step). Steps
that wait on AWS (SSM commands, snapshot copies) answer ``pending`` and loop through a
Wait state; a termination waits for completing snapshots by retrying ``EvidencePending``.
A failure anywhere is caught, reported and ends that instance's branch as ``failed``; a
failure of the security-group swap first restores the original groups. One instance's
failure does not stop the others; the execution fails at the end if any failed or a
termination was refused.
"""

from __future__ import annotations

from typing import Any

LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
COMMAND_POLL_SECONDS = 30
COPY_POLL_SECONDS = 60
SNAPSHOT_RETRY_SECONDS = 60
SNAPSHOT_RETRY_ATTEMPTS = 120  # two hours for large volumes to complete
MAX_CONCURRENT_INSTANCES = 5

# State names people read in the console's execution view, by step.
STATE_NAMES = {
    "protect": "Protect instance and volumes",
    "contain": "Detach from Auto Scaling and target groups",
    "capture_volatile": "Capture volatile evidence",
    "snapshot": "Snapshot volumes",
    "revoke_credentials": "Revoke instance credentials",
    "isolate_network": "Isolate network",
    "copy_snapshots": "Copy snapshots with evidence key",
    "terminate": "Terminate instance",
    "report": "Report",
    "restore_security_groups": "Restore security groups",
}
FAILURE_REPORT = "Report failure"


def _invoke(function_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
        "Retry": [
            {
                "ErrorEquals": LAMBDA_TRANSIENT_ERRORS,
                "IntervalSeconds": 2,
                "MaxAttempts": 6,
                "BackoffRate": 2.0,
                "JitterStrategy": "FULL",
            }
        ],
    }


def _step(
    function_arn: str, step: str, next_state: str, catch: str = FAILURE_REPORT
) -> dict[str, Any]:
    state = _invoke(function_arn, {"step": step, "target.$": "$.target"})
    state |= {
        "ResultSelector": {"status.$": "$.Payload.status", "result.$": "$.Payload"},
        "ResultPath": f"$.steps.{step}",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch}],
        "Next": next_state,
    }
    return state


def _waits_for_snapshots(state: dict[str, Any]) -> dict[str, Any]:
    """Terminate raises EvidencePending while snapshots complete: retry, don't fail."""
    state["Retry"].append(
        {
            "ErrorEquals": ["EvidencePending"],
            "IntervalSeconds": SNAPSHOT_RETRY_SECONDS,
            "MaxAttempts": SNAPSHOT_RETRY_ATTEMPTS,
            "BackoffRate": 1.0,
        }
    )
    return state


def _poll(step: str, wait_state: str, next_state: str) -> dict[str, Any]:
    return {
        "Type": "Choice",
        "Choices": [
            {
                "Variable": f"$.steps.{step}.status",
                "StringEquals": "pending",
                "Next": wait_state,
            }
        ],
        "Default": next_state,
    }


def _outcome(outcome: str, error: bool = False) -> dict[str, Any]:
    parameters = {
        "instanceId.$": "$.target.instanceId",
        "caseId.$": "$.target.caseId",
        "outcome": outcome,
        "steps.$": "$.steps",
    }
    if error:  # every path into the failed outcome has caught an error into $.error
        parameters["error.$"] = "$.error"
    return {"Type": "Pass", "Parameters": parameters, "End": True}


def per_instance(function_arn: str) -> dict[str, Any]:
    """The isolation steps for one instance (the Map state's processor)."""
    name = STATE_NAMES
    states: dict[str, Any] = {
        name["protect"]: _step(function_arn, "protect", name["contain"]),
        name["contain"]: _step(function_arn, "contain", name["capture_volatile"]),
        name["capture_volatile"]: _step(
            function_arn, "capture_volatile", "Volatile evidence captured?"
        ),
        "Volatile evidence captured?": _poll(
            "capture_volatile", "Wait for evidence commands", name["snapshot"]
        ),
        "Wait for evidence commands": {
            "Type": "Wait",
            "Seconds": COMMAND_POLL_SECONDS,
            "Next": name["capture_volatile"],
        },
        name["snapshot"]: _step(function_arn, "snapshot", name["revoke_credentials"]),
        name["revoke_credentials"]: _step(
            function_arn, "revoke_credentials", name["isolate_network"]
        ),
        name["isolate_network"]: _step(
            function_arn,
            "isolate_network",
            name["copy_snapshots"],
            catch=name["restore_security_groups"],
        ),
        name["restore_security_groups"]: {
            **_invoke(
                function_arn,
                {"step": "restore_security_groups", "target.$": "$.target"},
            ),
            "ResultSelector": {"status.$": "$.Payload.status", "result.$": "$.Payload"},
            "ResultPath": "$.steps.restore_security_groups",
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.rollbackError",
                    "Next": FAILURE_REPORT,
                }
            ],
            "Next": FAILURE_REPORT,
        },
        name["copy_snapshots"]: _step(function_arn, "copy_snapshots", "Snapshot copies done?"),
        "Snapshot copies done?": _poll(
            "copy_snapshots", "Wait for snapshot copies", "Terminate requested?"
        ),
        "Wait for snapshot copies": {
            "Type": "Wait",
            "Seconds": COPY_POLL_SECONDS,
            "Next": name["copy_snapshots"],
        },
        "Terminate requested?": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.target.action",
                    "StringEquals": "terminate",
                    "Next": name["terminate"],
                }
            ],
            "Default": name["report"],
        },
        name["terminate"]: _waits_for_snapshots(_step(function_arn, "terminate", name["report"])),
        name["report"]: {
            **_invoke(function_arn, {"step": "report", "target.$": "$.target"}),
            "ResultSelector": {"status.$": "$.Payload.status", "result.$": "$.Payload"},
            "ResultPath": "$.steps.report",
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Isolation failed"}
            ],
            "Next": "Termination refused?",
        },
        "Termination refused?": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.steps.terminate.status",
                    "StringEquals": "refused",
                    "Next": "Termination refused",
                }
            ],
            "Default": "Isolated",
        },
        FAILURE_REPORT: {
            **_invoke(
                function_arn,
                {"step": "report", "target.$": "$.target", "error.$": "$.error"},
            ),
            "ResultSelector": {"status.$": "$.Payload.status", "result.$": "$.Payload"},
            "ResultPath": "$.steps.report",
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.reportError",
                    "Next": "Isolation failed",
                }
            ],
            "Next": "Isolation failed",
        },
        "Isolated": _outcome("isolated"),
        "Termination refused": _outcome("termination-refused"),
        "Isolation failed": _outcome("failed", error=True),
    }
    # Terminate runs only when asked; its placeholder keeps "Termination refused?" a plain
    # comparison (a Choice on a missing path is a runtime error).
    return {
        "StartAt": "Start case",
        "States": {
            "Start case": {
                "Type": "Pass",
                "Parameters": {
                    "target.$": "$.target",
                    "steps": {"terminate": {"status": "not-requested"}},
                },
                "Next": name["protect"],
            },
            **states,
        },
    }


def definition(function_arn: str) -> dict[str, Any]:
    """The whole state machine; ``function_arn`` may be a Terraform expression."""
    return {
        "Comment": (
            "Playbook as Code forensics: contain an EC2 instance step by step and keep the "
            "evidence (functions/forensics/workflow.py)"
        ),
        "StartAt": "Normalise",
        "States": {
            "Normalise": {
                **_invoke(function_arn, {"step": "normalise", "event.$": "$"}),
                "ResultSelector": {"status.$": "$.Payload.status", "result.$": "$.Payload"},
                "ResultPath": "$.normalised",
                "Next": "Accepted?",
            },
            "Accepted?": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.normalised.status",
                        "StringEquals": "accepted",
                        "Next": "Each instance",
                    }
                ],
                "Default": "Rejected",
            },
            "Rejected": {
                "Type": "Fail",
                "Error": "EventRejected",
                "CausePath": "$.normalised.result.reason",
            },
            "Each instance": {
                "Type": "Map",
                "ItemsPath": "$.normalised.result.targets",
                "ItemSelector": {"target.$": "$$.Map.Item.Value"},
                "MaxConcurrency": MAX_CONCURRENT_INSTANCES,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    **per_instance(function_arn),
                },
                "ResultSelector": {"instances.$": "$", "outcomes.$": "$[*].outcome"},
                "ResultPath": "$.outcome",
                "Next": "Count outcomes",
            },
            "Count outcomes": {
                "Type": "Pass",
                "Parameters": {
                    "instances.$": "$.outcome.instances",
                    "failed.$": "States.ArrayContains($.outcome.outcomes, 'failed')",
                    "refused.$": "States.ArrayContains($.outcome.outcomes, 'termination-refused')",
                },
                "ResultPath": "$.outcome",
                "Next": "All instances isolated?",
            },
            "All instances isolated?": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Or": [
                            {"Variable": "$.outcome.failed", "BooleanEquals": True},
                            {"Variable": "$.outcome.refused", "BooleanEquals": True},
                        ],
                        "Next": "Some instances not isolated",
                    }
                ],
                "Default": "Done",
            },
            "Some instances not isolated": {
                "Type": "Fail",
                "Error": "IsolationIncomplete",
                "Cause": "One or more instances failed or their termination was refused: see "
                "the Report step of each in this execution and the evidence bucket.",
            },
            "Done": {"Type": "Succeed"},
        },
    }
