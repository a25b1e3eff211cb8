"""The blockers' SQS intake (functions/common/queue.py) through the real waf_blocker
handler, against moto: a batch is validated record by record, applied in one
read-modify-write per IP set, idempotent per delivery, and reports partial failures."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

from functions.common import blocking, queue
from tests.unit.test_waf_blocker import (  # the WAF blocker's moto world, shared
    ACCOUNT,
    BLOCK_IP_ARN,
    IAM_V6,
    PROBE,
    REGION,
    SSH,
    Env,
    env,
    fail_updates,
    load,
)

pytestmark = pytest.mark.unit

QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:blocker-waf-blocker-intake"
__all__ = ["env"]  # the fixture, imported so pytest finds it here


def batch(*bodies: Any) -> dict[str, Any]:
    """An SQS batch; a ``str`` body is sent as is (for malformed records)."""
    shaped = queue.sqs_batch([b if isinstance(b, dict) else {} for b in bodies], QUEUE_ARN)
    for record, body in zip(shaped["Records"], bodies, strict=True):
        if isinstance(body, str):
            record["body"] = body
    return shaped


def ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def spoofed(name: str) -> dict[str, Any]:
    event = load(name)
    event["source"] = "custom.attacker"
    return event


def mixed() -> dict[str, Any]:
    """Good findings, a Block IP action, a duplicate and every kind of bad record."""
    other_action = load("securityhub_block_ip.json")
    other_action["resources"] = [f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/Other"]
    no_severity = load(PROBE)
    del no_severity["detail"]["severity"]
    return batch(
        load(SSH),  # 0 good
        load(PROBE),  # 1 good
        load(IAM_V6),  # 2 good, IPv6
        load("securityhub_block_ip.json"),  # 3 Block IP action
        load(SSH),  # 4 the same delivery again in this batch
        "{not json",  # 5 malformed
        spoofed(SSH),  # 6 spoofed source
        other_action,  # 7 another custom action
        no_severity,  # 8 malformed finding
        load("securityhub_findings_imported.json"),  # 9 not acted on
        load("health_event.json"),  # 10 not an event of this queue
    )


EXPECTED_V4 = {
    "185.220.101.46/32",
    "80.82.77.139/32",
    "45.155.205.233/32",
    "91.240.118.172/32",
    "185.220.100.252/32",
}


def test_a_mixed_batch_is_one_update_per_ip_set_and_rejects_bad_records(env: Env) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    event = mixed()

    result = env.invoke(event)

    assert result == {"batchItemFailures": []}
    assert set(env.ip_set(4)) == EXPECTED_V4
    assert len(env.ip_set(4)) == len(EXPECTED_V4), "each address once"
    assert env.ip_set(6) == ["2a01:4f8:c17:2a45::1/128"]
    assert env.update_calls() == 2, "one read-modify-write per IP set for the whole batch"
    rows = env.rows()
    assert rows["ip#185.220.101.46/32"]["reason"]["S"] == (
        "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce, GuardDuty Recon:EC2/"
        "PortProbeUnprotectedPort, GuardDuty UnauthorizedAccess:IAMUser/MaliciousIPCaller "
        "and 1 more"
    )
    (report,) = env.reports()
    assert report["detail"]["severity"] == "HIGH"


def test_a_redelivered_batch_changes_nothing(env: Env) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    env.invoke(mixed())
    rows, v4 = env.rows(), env.ip_set(4)
    env.reports()
    env.clock.advance(60)

    # SQS redelivers with the same bodies (and message ids); a finding delivered directly
    # before shares the key as well.
    assert env.invoke(mixed()) == {"batchItemFailures": []}
    assert env.invoke(copy.deepcopy(load(PROBE)))["status"] == "processed"

    assert env.update_calls() == 2
    assert env.rows() == rows
    assert env.ip_set(4) == v4
    assert env.reports() == []


def test_a_finding_applied_directly_is_a_duplicate_in_a_batch(env: Env) -> None:
    env.invoke(load(PROBE))
    assert env.update_calls() == 1

    assert env.invoke(batch(load(PROBE), load(SSH))) == {"batchItemFailures": []}

    assert env.update_calls() == 2
    assert env.rows()["ip#185.220.101.46/32"]["reason"]["S"] == (
        "GuardDuty UnauthorizedAccess:EC2/SSHBruteForce"
    ), "the batch held the SSH finding only"


def test_a_failed_apply_reports_every_record_but_the_rejected_and_releases_them(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.set_env(BLOCK_IP_ACTION_ARN=BLOCK_IP_ARN)
    event = mixed()
    fail_updates(env, monkeypatch, ["WAFInvalidParameterException"])

    result = env.invoke(event)

    # The records whose findings were in the failed apply (and the duplicate riding
    # with one); the rejected and ignored ones (5-10) are consumed.
    assert result == {"batchItemFailures": [{"itemIdentifier": m} for m in ids(event)[:5]]}
    assert env.ip_set(4) == []
    # The claims were released, so SQS's redelivery really applies them.
    assert env.invoke(mixed()) == {"batchItemFailures": []}
    assert set(env.ip_set(4)) == EXPECTED_V4


def test_a_delivery_in_flight_elsewhere_is_retried_later(env: Env) -> None:
    probe = load(PROBE)
    store = blocking.persistence_layer(env.table)
    store.configure(
        IdempotencyConfig(expires_after_seconds=blocking.IDEMPOTENCY_WINDOW_SECONDS),
        key_prefix=blocking.IDEMPOTENCY_KEY_PREFIX,
    )
    delivery = {"findingId": probe["detail"]["id"], "updatedAt": probe["detail"]["updatedAt"]}
    store.save_inprogress(delivery, remaining_time_in_millis=600_000)
    event = batch(load(SSH), probe)

    result = env.invoke(event)

    assert result == {"batchItemFailures": [{"itemIdentifier": ids(event)[1]}]}
    assert env.ip_set(4) == ["185.220.101.46/32"], "the other record is applied"


def test_an_event_that_is_not_an_sqs_batch_record_is_rejected_not_retried(env: Env) -> None:
    result = env.invoke({"Records": [{"body": json.dumps(load(SSH))}, "text"]})

    assert result == {"batchItemFailures": []}
    assert env.update_calls() == 0
