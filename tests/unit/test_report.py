"""Remediation reports on EventBridge (functions/common/report.py).

Against in-process moto: a report put on a member's default bus is matched by the
notifications module's own member forward pattern (``FORWARDED``) and its hub report rules
(``REPORT_RULES``), and by none of the finding rules that feed the member's topics, so the
member's topic gets the report once (by SNS) and the hub's topic once (by the forward).
moto delivers rule targets for real (SQS queues and cross-account buses), which is what
these tests lean on; its forward to another bus drops ``Resources`` and ``Time``, so those
are checked on the member's side (and its delivered events carry no ``account``).

moto never fails a PutEvents entry, so failed entries are answered by a botocore Stubber,
which also checks the request shape.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bundle.motoserver import FAKE_CREDENTIALS
from functions.common import aws, report
from modules.notifications import FINDING_RULES, FORWARDED, REPORT_RULES
from tests.helpers_permissions import record_calls

pytestmark = pytest.mark.unit

REGION = FAKE_CREDENTIALS["AWS_REGION"]
MEMBER = "123456789012"  # moto's default account
HUB = "111111111111"
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
EVENT_ID = "11710aed-b79e-4468-a20b-bb3c0c3b4860"


def sample(severity: str = "HIGH", actions: list[str] | None = None) -> dict[str, Any]:
    return report.remediation_report(
        function="waf_blocker",
        title="Blocked 203.0.113.7 (Recon:EC2/PortProbeUnprotectedPort)",
        severity=severity,
        summary="GuardDuty severity 8.0 finding: inbound attacker blocked for 12 h.",
        actions=actions if actions is not None else ["blocked 203.0.113.7/32 in playbook-v4"],
        account=MEMBER,
        region=REGION,
        resources=[
            f"arn:aws:wafv2:{REGION}:{MEMBER}:regional/ipset/playbook-v4/"
            "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"
        ],
        finding_id="5ec9f2c4a1f1a2b8e1c4d0a7f0d3e2b1",
        now=NOW,
    )


def queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            bodies.append(json.loads(message["Body"]))
    return bodies


def route(events: Any, name: str, pattern: dict[str, Any], targets: list[str], bus: str) -> None:
    """A rule; GuardDuty's numeric comparisons are placeholders (0) in the module's patterns,
    which the module fills from a variable: any number serves here."""
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), EventBusName=bus)
    events.put_targets(
        Rule=name,
        EventBusName=bus,
        Targets=[{"Id": f"t{i}", "Arn": arn} for i, arn in enumerate(targets)],
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv(report.EVENT_BUS_VARIABLE, raising=False)
    aws.reset()
    yield
    aws.reset()


@pytest.fixture
def member_topic(clean_env: None) -> Iterator[dict[str, Any]]:
    """moto, with the member's notify topic delivering to a queue."""
    with mock_aws():
        sqs = boto3.client("sqs")
        url, arn = queue(sqs, "member-topic")
        topic = boto3.client("sns").create_topic(Name="playbook-high")["TopicArn"]
        boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield {"topic": topic, "drain": {"member topic (SNS)": lambda: drain(sqs, url)}}


@pytest.fixture
def organisation(member_topic: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A member account wired as the notifications module wires it (its finding rules into
    its topics, the forward rule to the hub bus) and a hub account whose bus routes by the
    module's hub rules; SQS queues stand in for the topics."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{HUB}:role/PlaybookDeployer", RoleSessionName="hub"
    )["Credentials"]
    hub = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )
    hub_sqs, hub_events = hub.client("sqs"), hub.client("events")
    bus_arn = hub_events.create_event_bus(Name="playbook-hub")["EventBusArn"]
    assert f":{HUB}:" in bus_arn
    hub_queues = {s: queue(hub_sqs, f"hub-{s}") for s in ("high", "info")}
    for rule_id, (severity, _, pattern) in {**FINDING_RULES, **REPORT_RULES}.items():
        route(hub_events, rule_id, pattern, [hub_queues[severity][1]], "playbook-hub")

    member_rules_url, member_rules_arn = queue(sqs, "member-finding-rules")
    for rule_id, (_, _, pattern) in FINDING_RULES.items():
        route(events, rule_id, pattern, [member_rules_arn], "default")
    tap_url, tap_arn = queue(sqs, "forwarded")
    route(events, "forward-to-hub", FORWARDED, [bus_arn, tap_arn], "default")

    monkeypatch.setenv(report.EVENT_BUS_VARIABLE, report.DEFAULT_EVENT_BUS)
    member_topic["drain"].update(
        {
            "member finding rules": lambda: drain(sqs, member_rules_url),
            "forwarded": lambda: drain(sqs, tap_url),
            "hub high": lambda: drain(hub_sqs, hub_queues["high"][0]),
            "hub info": lambda: drain(hub_sqs, hub_queues["info"][0]),
        }
    )
    return member_topic


def delivered(organisation: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {name: drain() for name, drain in organisation["drain"].items()}


def test_a_report_reaches_the_member_topic_once_and_the_hub_once(
    organisation: dict[str, Any],
) -> None:
    high = sample("HIGH")
    with record_calls() as calls:
        report.publish(organisation["topic"], high)
    assert calls == {"sns:Publish", "events:PutEvents"}

    seen = delivered(organisation)
    assert [json.loads(m["Message"]) for m in seen["member topic (SNS)"]] == [high]
    assert seen["member finding rules"] == [], "no default-bus rule routes reports to topics"
    (forwarded,) = seen["forwarded"]
    assert forwarded["source"] == "playbook.waf_blocker"
    assert forwarded["detail-type"] == "Playbook Remediation"
    assert forwarded["detail"] == high["detail"]
    assert forwarded["resources"] == high["resources"]
    assert forwarded["time"] == "2025-11-20T12:00:00Z"
    (at_hub,) = seen["hub high"]
    assert (at_hub["source"], at_hub["detail"]) == ("playbook.waf_blocker", high["detail"])
    assert seen["hub info"] == []

    report.publish("", sample("LOW"))  # no local topic: the hub still hears of it
    seen = delivered(organisation)
    assert [m["detail"]["severity"] for m in seen["hub info"]] == ["LOW"]
    assert seen["hub high"] == [] and seen["member topic (SNS)"] == []


def test_without_the_variable_nothing_is_put_on_a_bus(
    member_topic: dict[str, Any],
) -> None:
    assert not report.wanted("")
    assert report.wanted(member_topic["topic"])
    with record_calls() as calls:
        report.publish(member_topic["topic"], sample())
    assert calls == {"sns:Publish"}
    assert len(member_topic["drain"]["member topic (SNS)"]()) == 1


def test_an_oversized_report_is_cut_to_fit_sns_and_eventbridge(
    organisation: dict[str, Any],
) -> None:
    # 3,000 actions of ~150 characters, some non-ASCII (more bytes than characters).
    actions = [f"blocked 198.51.100.{i % 250}/32 — {'é' * 60}{'x' * 60} #{i}" for i in range(3000)]
    big = sample(actions=actions)
    assert len(json.dumps(big)) > report.SIZE_LIMIT_BYTES

    fitted = report.fit(big)
    kept, note = fitted["detail"]["actions"][:-1], fitted["detail"]["actions"][-1]
    assert kept == actions[: len(kept)] and 0 < len(kept) < len(actions)
    assert note.startswith(f"... {len(actions) - len(kept)} more actions left out")
    assert len(json.dumps(fitted, sort_keys=True).encode()) <= report.SIZE_LIMIT_BYTES
    entry = report.event_entry("default", fitted)
    assert report.entry_size(entry) <= report.SIZE_LIMIT_BYTES
    one_more = {**fitted["detail"], "actions": [*actions[: len(kept) + 1], note]}
    too_big = json.dumps({**fitted, "detail": one_more}, sort_keys=True).encode()
    assert len(too_big) > report.SIZE_LIMIT_BYTES, "the cut keeps every action that fits"
    assert big["detail"]["actions"] == actions, "the caller's report is left as it was"

    report.publish(organisation["topic"], big)  # moto refuses SNS messages over 256 KB
    seen = delivered(organisation)
    (message,) = seen["member topic (SNS)"]
    assert json.loads(message["Message"])["detail"]["actions"][-1] == note
    assert seen["hub high"][0]["detail"]["actions"][-1] == note

    small = sample()
    assert report.fit(small) is small


def test_a_report_too_large_without_its_actions_is_a_clear_error() -> None:
    huge = sample(actions=[])
    huge["detail"]["summary"] = "x" * report.SIZE_LIMIT_BYTES
    with pytest.raises(ValueError, match="over 262144 bytes even without its actions"):
        report.fit(huge)


def test_entry_size_follows_aws_calculation() -> None:
    entry = report.event_entry("default", sample())
    expected = 14 + sum(
        len(text.encode()) for text in (entry["Source"], entry["DetailType"], entry["Detail"])
    )
    expected += sum(len(r.encode()) for r in entry["Resources"])
    assert report.entry_size(entry) == expected
    assert report.entry_size({**entry, "Time": None}) == expected - 14


# ------------------------------------------------ failed entries (moto never fails an entry)


def expected_entry(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "Entries": [
            {
                "EventBusName": "default",
                "Source": "playbook.waf_blocker",
                "DetailType": "Playbook Remediation",
                "Detail": json.dumps(item["detail"], sort_keys=True),
                "Resources": item["resources"],
                "Time": NOW,
            }
        ]
    }


def failed(code: str, message: str) -> dict[str, Any]:
    return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": message}]}


def test_throttled_and_internal_failures_are_retried_then_succeed(clean_env: None) -> None:
    item, naps = sample(), []
    with Stubber(aws.client("events")) as stubber:
        stubber.add_response(
            "put_events", failed("ThrottlingException", "Rate exceeded"), expected_entry(item)
        )
        stubber.add_response(
            "put_events", failed("InternalFailure", "Internal failure"), expected_entry(item)
        )
        accepted = {"FailedEntryCount": 0, "Entries": [{"EventId": EVENT_ID}]}
        stubber.add_response("put_events", accepted, expected_entry(item))
        event_id = report.put_event("default", item, sleep=naps.append)
        stubber.assert_no_pending_responses()
    assert event_id == EVENT_ID
    assert len(naps) == 2 and all(0 <= n <= aws.BACKOFF_CAP_SECONDS for n in naps)


def test_a_refused_entry_is_not_retried_and_raises(clean_env: None) -> None:
    item, naps = sample(), []
    with Stubber(aws.client("events")) as stubber:
        stubber.add_response(
            "put_events",
            failed(
                "NotAuthorizedForSourceException",
                "Not authorized for the source playbook.waf_blocker.",
            ),
            expected_entry(item),
        )
        with pytest.raises(report.ReportNotForwarded, match="NotAuthorizedForSourceException"):
            report.put_event("default", item, sleep=naps.append)
        stubber.assert_no_pending_responses()
    assert naps == []


def test_retries_are_bounded_and_the_sns_message_still_goes_out(
    member_topic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(report.EVENT_BUS_VARIABLE, report.DEFAULT_EVENT_BUS)
    item, naps = sample(), []
    with Stubber(aws.client("events")) as stubber:
        for _ in range(report.PUT_ATTEMPTS):
            stubber.add_response(
                "put_events", failed("ThrottlingException", "Rate exceeded"), expected_entry(item)
            )
        with pytest.raises(report.ReportNotForwarded, match=r"ThrottlingException.*4 of 4"):
            report.publish(member_topic["topic"], item, sleep=naps.append)
        stubber.assert_no_pending_responses()
    assert len(naps) == report.PUT_ATTEMPTS - 1
    assert len(delivered(member_topic)["member topic (SNS)"]) == 1


def test_every_function_that_publishes_reports_declares_putting_them_on_the_bus() -> None:
    functions = Path(report.__file__).resolve().parents[1]
    # A function publishes itself, or through the blocking engine's Point.publish.
    publishers = {
        path.parent.name
        for path in functions.glob("*/*.py")
        if path.parent.name != "common"
        and ("report.publish(" in path.read_text() or "(engine.Point):" in path.read_text())
    }
    assert "report.publish(" in (functions / "common" / "engine.py").read_text()
    assert publishers == {
        "waf_blocker", "nacl_blocker", "responder", "forensics", "threat_feed",
        "config_remediator",
    }  # fmt: skip
    for name in publishers:
        declared = importlib.import_module(f"functions.{name}.permissions").PERMISSIONS
        assert report.PUT_EVENTS in declared, name
