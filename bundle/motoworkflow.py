"""Run the forensics state machine in moto (tests and the local demo), with its steps
executed by the real handler, and the moto gaps that needs filled.

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
import hashlib
import json
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from unittest import mock

from botocore.awsrequest import AWSResponse

from bundle.motoserver import CONTROL_TIMEOUT_SECONDS

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
        backend: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
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


def failures(sfn: Any, execution_arn: str) -> list[str]:
    """The errors the execution's tasks and Lambda invocations failed with (for messages)."""
    found = []
    for event in history(sfn, execution_arn):
        for key, details in event.items():
            if key.endswith("FailedEventDetails") and isinstance(details, dict):
                found.append(f"{details.get('error')}: {str(details.get('cause'))[:400]}")
    return found


def entered_states(sfn: Any, execution_arn: str) -> list[str]:
    """Names of the states the execution entered, in order (Map iterations included)."""
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in history(sfn, execution_arn)
        if "stateEnteredEventDetails" in e
    ]


@contextlib.contextmanager
def executing_state_machines(endpoint: str) -> Iterator[None]:
    """Make the moto server at ``endpoint`` (running in this process) execute state
    machines; moto's interpreter calls the other services back at ``localhost:MOTO_PORT``."""
    import os
    import urllib.request

    def configure(execute: bool) -> None:
        request = urllib.request.Request(
            f"{endpoint}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": execute}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS):
            pass

    saved = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = endpoint.rsplit(":", 1)[-1]
    configure(True)
    try:
        with validation_answered():
            yield
    finally:
        configure(False)
        if saved is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved


def instance_information_stand_in(managed: dict[str, str]) -> Callable[..., Any]:
    """Answers ssm:DescribeInstanceInformation, which moto does not implement, with the
    documented shape (InstanceInformationList of InstanceId, PingStatus, PlatformType)."""

    def answer(model: Any, params: dict[str, Any], **_: Any) -> Any:
        # before-call sees the serialised request; SSM speaks JSON.
        request = json.loads(params.get("body") or b"{}")
        wanted = [v for f in request.get("Filters", []) for v in f.get("Values", [])]
        listed = [
            {"InstanceId": i, "PingStatus": status, "PlatformType": "Linux"}
            for i, status in managed.items()
            if i in wanted
        ]
        return AWSResponse("https://ssm.us-east-1.amazonaws.com/", 200, {}, None), {
            "InstanceInformationList": listed
        }

    return answer


@contextlib.contextmanager
def validation_answered() -> Iterator[None]:
    """Two calls the AWS provider makes that moto does not implement, answered from moto's
    own state: ValidateStateMachineDefinition (before create and update) by moto's Amazon
    States Language parser, the one that executes the definition (``OK``, or ``FAIL``
    with the parser's message; documented shape: result, diagnostics), and
    ListStateMachineVersions (after create) from the versions moto keeps."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.responses import StepFunctionResponse

    def validate(response: Any) -> Any:
        try:
            AmazonStateLanguageParser.parse(response._get_param("definition"))
        except Exception as exc:
            diagnostic = {
                "severity": "ERROR",
                "code": "SCHEMA_VALIDATION_FAILED",
                "message": str(exc)[:500],
            }
            return ActionResult({"result": "FAIL", "diagnostics": [diagnostic]})
        return ActionResult({"result": "OK", "diagnostics": []})

    def list_versions(response: Any) -> Any:
        machine = response.stepfunction_backend.describe_state_machine(
            response._get_param("stateMachineArn")
        )
        versions = [
            {"stateMachineVersionArn": version.arn, "creationDate": version.creation_date}
            for _, version in sorted(machine.versions.items(), reverse=True)
        ]
        return ActionResult({"stateMachineVersions": versions})

    with (
        mock.patch.object(
            StepFunctionResponse, "validate_state_machine_definition", validate, create=True
        ),
        mock.patch.object(
            StepFunctionResponse, "list_state_machine_versions", list_versions, create=True
        ),
    ):
        yield


@contextlib.contextmanager
def bucket_policies_over_tls() -> Iterator[None]:
    """moto evaluates a bucket policy's statements without their conditions, so the
    evidence bucket's "deny unless aws:SecureTransport" statement denies every request
    (moto is reached over http). Requests to AWS are TLS: leave that statement out of
    moto's evaluation; every other statement is evaluated as moto does."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def permission(bucket: Any, action: str, resource: str) -> Any:
        if bucket.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(bucket.policy)
        policy["Statement"] = [
            s
            for s in policy.get("Statement", [])
            if s.get("Condition") != {"Bool": {"aws:SecureTransport": "false"}}
        ]
        return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)

    with mock.patch.object(FakeBucket, "get_permission", permission):
        yield


def _listing(name: str, instance_id: str) -> bytes:
    return f"{name} of {instance_id}\n".encode()


class SsmAgentStandIn:
    """Plays the SSM agent on the instance: moto's Run Command executes nothing (every
    invocation says Success with empty output). Right after SendCommand it does what the
    evidence documents (functions/forensics/documents.py) do on a Linux instance: upload
    each artefact with a SHA-256 checksum (as ``aws s3 cp --checksum-algorithm SHA256``)
    and print one JSON line per artefact, or why it was skipped."""

    def __init__(self, content: Callable[[str, str], bytes] = _listing) -> None:
        self.content = content  # artefact name, instance id -> the artefact's bytes
        self.status = "Success"  # what each new invocation reports
        self.memory_tool = False  # AVML or LiME installed?
        self.tamper = False  # upload something other than what was hashed
        self.commands: list[str] = []

    def patch(self) -> tuple[Any, str, Any]:
        """``(target, name, replacement)`` for ``monkeypatch.setattr`` / ``mock.patch``."""
        from moto.ssm.models import SimpleSystemManagerBackend

        original = SimpleSystemManagerBackend.send_command

        def send_and_run(backend: Any, **kwargs: Any) -> Any:
            command = original(backend, **kwargs)
            self.run(command)
            return command

        return SimpleSystemManagerBackend, "send_command", send_and_run

    def run(self, command: Any) -> None:
        import boto3

        parameters = command.parameters
        bucket, prefix = parameters["Bucket"][0], parameters["Prefix"][0]
        s3 = boto3.client("s3", region_name=command.backend_region)
        lines: list[dict[str, Any]] = []
        artefacts = {
            "volatile": ["processes.txt", "network.txt", "logins.txt"],
            "memory": ["memory.lime"],
        }[command.document_name.rsplit("-", 1)[-1]]
        for name in artefacts:
            if name == "memory.lime" and not self.memory_tool:
                lines.append({"name": name, "skipped": "neither AVML nor LiME is installed"})
                continue
            body = self.content(name, command.instance_ids[0])
            uploaded = body + b"tampered" if self.tamper else body
            s3.put_object(
                Bucket=bucket, Key=f"{prefix}/{name}", Body=uploaded, ChecksumAlgorithm="SHA256"
            )
            lines.append(
                {
                    "name": name,
                    "key": f"{prefix}/{name}",
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "bytes": len(body),
                }
            )
        stdout = "\n".join(json.dumps(line) for line in lines) + "\n"
        for invocation in command.invocations:
            invocation["Status"] = self.status
            invocation["StatusDetails"] = self.status
            invocation["StandardOutputContent"] = stdout if self.status == "Success" else ""
        self.commands.append(command.command_id)

    def finish_all(self, account: str, region: str) -> None:
        """Every command left InProgress completes."""
        from moto.ssm.models import ssm_backends

        self.status = "Success"
        for command in ssm_backends[account][region]._commands:
            self.run(command)
