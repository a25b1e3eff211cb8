"""A moto server on 127.0.0.1 for tests, benchmarks and the local demo.

It binds the loopback address only, picks a free port, and stops when the context
exits (or the process ends: the server thread is a daemon).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A reset rebuilds every backend, loading AWS's managed IAM policies among them: seconds of
# CPU, and more than ten on a loaded two-core machine (seen in a parallel test run).
CONTROL_TIMEOUT_SECONDS = 120

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoServer:
    endpoint: str

    def reset(self) -> None:
        """Drop every resource the server holds (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS):
            pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the life of the context, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    # Modules attach AWS managed policies (AWSXRayDaemonWriteAccess); moto knows them only
    # when asked to load them, which it reads whenever it creates an IAM backend. Only for
    # the server's life: loading them costs every later in-process mock_aws() about a
    # second (it doubled the unit layer's time when the setting leaked out of here).
    loading = os.environ.get("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with (
        scoped_environ({"MOTO_IAM_LOAD_MANAGED_POLICIES": loading}),
        # werkzeug's line per request (hundreds per apply); warnings and errors still show.
        quiet_loggers("werkzeug"),
        _serve() as server,
    ):
        yield server


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of the named loggers for the life of the context."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, saved, strict=True):
            logger.setLevel(previous)


# Conditional writes that AWS performs atomically and moto's server, which answers requests
# on several threads without a lock, performs as a check followed by a write.
_ATOMIC_IN_AWS = (
    ("moto.wafv2.models", "WAFV2Backend", ("update_ip_set",)),
    (
        "moto.dynamodb.models",
        "DynamoDBBackend",
        ("put_item", "update_item", "delete_item", "transact_write_items"),
    ),
)
_ATOMIC = threading.RLock()


def _make_atomic() -> None:
    """One lock around each conditional write of :data:`_ATOMIC_IN_AWS`.

    moto checks a WAF LockToken (or a DynamoDB condition) and then writes, in two steps,
    while another request thread may pass the same check in between: under load both
    writers "win" and one update is lost, which AWS's optimistic lock never allows (seen:
    995 of 1,000 addresses in the 8-thread WAF concurrency test on a loaded machine).
    """
    import importlib

    for module_name, class_name, methods in _ATOMIC_IN_AWS:
        backend = getattr(importlib.import_module(module_name), class_name)
        for name in methods:
            original = getattr(backend, name)
            if getattr(original, "_playbook_atomic", False):
                continue

            def atomic(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with _ATOMIC:
                    return _original(*args, **kwargs)

            atomic._playbook_atomic = True  # type: ignore[attr-defined]
            setattr(backend, name, atomic)


def _schedule_rules_match_no_events() -> None:
    from moto.events.models import Rule

    if getattr(Rule, "_playbook_schedule", False):
        return
    moto_send = Rule.send_to_targets

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return
        moto_send(self, original_event, transform_input)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    Rule._playbook_schedule = True  # type: ignore[attr-defined]


def _fill_moto_gaps() -> None:
    """Teach moto what AWS documents and moto 5.2 lacks, where the modules depend on it.

    - DescribeNetworkAcls filter ``network-acl-id`` (the nacl_blocklist module looks its
      guarded ACLs up by id; moto raises FilterNotImplementedError). AWS: "network-acl-id
      - The ID of the network ACL", see
      https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeNetworkAcls.html.
    - Atomic conditional writes (:func:`_make_atomic`).
    - A schedule rule without an event pattern matches no PutEvents event. moto lets it
      match every event and then fails the whole PutEvents (a 500) on its Lambda target,
      so a remediator's report on the default bus (functions/common/report.py) failed in
      the demo. AWS: "Rules with ScheduleExpressions self-trigger based on the given
      schedule", https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html.
    """
    from moto.ec2.models.network_acls import NetworkAcl

    _make_atomic()
    _schedule_rules_match_no_events()
    if getattr(NetworkAcl, "_playbook_filters", False):
        return
    moto_filter = NetworkAcl.get_filter_value

    def get_filter_value(self: NetworkAcl, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name == "network-acl-id":
            return self.id
        return moto_filter(self, filter_name, method_name)

    NetworkAcl.get_filter_value = get_filter_value  # type: ignore[method-assign]
    NetworkAcl._playbook_filters = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def _serve() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    _fill_moto_gaps()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto server on {endpoint} did not start") from None
            time.sleep(0.1)
    # moto's backends live in the process, not in the server: a second server in the same
    # process would start with everything an earlier one left behind.
    MotoServer(endpoint).reset()
    # No Docker here: moto's Docker-less Lambda backend accepts SNS deliveries to Lambda
    # subscriptions without running code (tests run handlers in-process instead).
    configure = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(configure, timeout=CONTROL_TIMEOUT_SECONDS):
        pass
    try:
        yield MotoServer(endpoint)
    finally:
        server.stop()


@contextlib.contextmanager
def pointed_at(endpoint: str) -> Iterator[None]:
    """Point boto3 (and the Terraform AWS provider) at ``endpoint`` with fake credentials."""
    with scoped_environ({**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}):
        yield


def lambda_sns_record(envelope: dict[str, Any]) -> dict[str, Any]:
    """The Lambda event record SNS would deliver, from the message an SQS subscriber got.

    moto does not deliver SNS messages to Lambda subscriptions (that needs Docker), so
    tests and the demo hand this record to the handler in-process.
    """
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{envelope['TopicArn']}:in-process",
        "Sns": {
            "Type": envelope["Type"],
            "MessageId": envelope["MessageId"],
            "TopicArn": envelope["TopicArn"],
            "Subject": envelope.get("Subject"),
            "Message": envelope["Message"],
            "Timestamp": envelope["Timestamp"],
            "SignatureVersion": envelope["SignatureVersion"],
            "Signature": envelope["Signature"],
            "SigningCertUrl": envelope["SigningCertURL"],
            "UnsubscribeUrl": envelope["UnsubscribeURL"],
            "MessageAttributes": envelope.get("MessageAttributes", {}),
        },
    }


@dataclass(frozen=True)
class InProcessContext:
    """The Lambda context a handler gets when tests or the demo invoke it in-process."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = "in-process"
    remaining_ms: int = 60_000  # what get_remaining_time_in_millis answers

    @classmethod
    def of(cls, function_arn: str, **fields: Any) -> InProcessContext:
        return cls(function_arn.split(":")[-1], function_arn, **fields)

    @classmethod
    def named(
        cls, function: str, region: str = "us-east-1", account: str = "123456789012", **fields: Any
    ) -> InProcessContext:
        return cls.of(f"arn:aws:lambda:{region}:{account}:function:{function}", **fields)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def terraform_override(endpoint: str, services: Sequence[str]) -> dict[str, Any]:
    """A Terraform override file that points every stack's aws provider at ``endpoint``
    with fake base credentials; the stack's own ``assume_role`` goes through moto's STS."""
    return {
        "provider": {
            "aws": {
                "access_key": "testing",
                "secret_key": "testing",
                "skip_metadata_api_check": True,
                "max_retries": 2,
                "endpoints": {service: endpoint for service in services},
            }
        }
    }


def s3_backend_config(endpoint: str) -> str:
    """``terraform init -backend-config`` file content for the S3 backend against moto
    (path-style requests: moto's buckets have no DNS names)."""
    return (
        f'endpoints = {{ s3 = "{endpoint}", sts = "{endpoint}" }}\n'
        "use_path_style = true\n"
        "skip_credentials_validation = true\n"
        "skip_requesting_account_id = true\n"
        "skip_metadata_api_check = true\n"
    )
