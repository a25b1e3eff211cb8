"""Run the forensics state machine in moto, with its steps executed by the real handler.

moto 5.2 executes state machines only when asked (``{"stepfunctions":
{"execute_state_machine": True}}``; by default StartExecution does nothing and the history
is static). It then interprets the definition with its Amazon States Language engine
(ported from LocalStack): Choice, Wait, Map, Retry, Catch, intrinsic functions and the
execution history are real. Its ``lambda:invoke`` tasks call moto's Lambda, which cannot
run code without Docker (with ``use_docker`` off it echoes the payload). So
:func:`lambda_runs_in_process` routes moto's Lambda Invoke to the real handler in this
process, returning what Lambda returns: the handler's result, or for an exception
``x-amz-function-error: Unhandled`` and ``{"errorType", "errorMessage"}``, which Step
Functions turns into the error name its Retry and Catch match.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from unittest import mock

Handler = Callable[[dict[str, Any]], Any]

EXECUTION_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


@contextlib.contextmanager
def lambda_runs_in_process(handlers: Mapping[str, Handler]) -> Iterator[list[dict[str, Any]]]:
    """Invoke of a function named in ``handlers`` runs it here; yields the invocations."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls: list[dict[str, Any]] = []

    def invoke(
        backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:  # fmt: skip
        name = (
            function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        )
        event = json.loads(body or "{}")
        calls.append(event)
        try:
            result = handlers[name](event)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return json.dumps(error).encode()
        return json.dumps(result).encode()

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield calls


def finish(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """Wait for an execution moto runs in a worker thread (joined, no polling)."""
    from moto.stepfunctions.parser.utils import TMP_THREADS

    while TMP_THREADS:
        TMP_THREADS.pop().join(timeout=120)
    described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
    return described


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events += page["events"]
    return events


def entered_states(sfn: Any, execution_arn: str) -> list[str]:
    """Names of the states the execution entered, in order (Map iterations included)."""
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in history(sfn, execution_arn)
        if "stateEnteredEventDetails" in e
    ]
