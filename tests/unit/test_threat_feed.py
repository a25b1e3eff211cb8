"""The threat feed updater end to end: feeds from a local HTTP server on 127.0.0.1, S3,
Secrets Manager and SNS in moto (``mock_aws``), and GuardDuty through a botocore Stubber.

moto does not implement GuardDuty threat intel sets (CreateThreatIntelSet,
UpdateThreatIntelSet): the guardduty client the updater gets from functions.common.aws is
wrapped in a Stubber that checks the exact UpdateThreatIntelSet request and fails on any
call that was not expected (the "unchanged: no update call" cases rely on that).

The updater fetches over HTTPS only; these tests set THREAT_FEED_ALLOW_HTTP_LOOPBACK=1,
the one switch that lets it read plain http:// from 127.0.0.1 (the module never sets it),
and a test below checks that without the switch such a URL is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bundle.feedserver import FeedServer, feed_server
from bundle.motoserver import FAKE_CREDENTIALS, InProcessContext
from functions.common import aws, permissions
from functions.threat_feed import entries, handler, logic
from functions.threat_feed.permissions import PERMISSIONS
from tests.helpers_permissions import record_calls

pytestmark = pytest.mark.unit

REGION = "us-east-1"
ACCOUNT = "123456789012"
DETECTOR = "12abc34d567e8fa901bc2d34e56789f0"
FEEDS = Path(__file__).resolve().parents[1] / "events" / "threat_feeds"
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


CONTEXT = InProcessContext.named("threat-feed", memory_limit_in_mb=1024, remaining_ms=300_000)


@dataclass
class World:
    server: FeedServer
    bucket: str
    key_arn: str
    topic_arn: str
    queue_url: str
    monkeypatch: pytest.MonkeyPatch
    set_ids: dict[str, str] = field(default_factory=dict)

    def configure(self, feeds: list[dict[str, str]], **extra: str) -> None:
        self.set_ids = {f["name"]: uuid.uuid4().hex for f in feeds}
        if "MANUAL_ENTRIES" in extra:
            self.set_ids[logic.MANUAL_LIST] = uuid.uuid4().hex
        lists = {
            name: {"id": set_id, "location": self.location(name)}
            for name, set_id in self.set_ids.items()
        }
        settings = {
            "LIST_BUCKET": self.bucket,
            "LIST_KMS_KEY_ARN": self.key_arn,
            "DETECTOR_ID": DETECTOR,
            "FEEDS": json.dumps(feeds),
            "THREAT_LISTS": json.dumps(lists),
            "CAP_POLICY": "refuse",
            "NOTIFY_TOPIC_ARN": self.topic_arn,
            "THREAT_FEED_ALLOW_HTTP_LOOPBACK": "1",
            **extra,
        }
        for key, value in settings.items():
            self.monkeypatch.setenv(key, value)

    def location(self, name: str) -> str:
        return f"https://s3.amazonaws.com/{self.bucket}/lists/{name}.txt"

    def expect_update(self, stubber: Stubber, name: str) -> None:
        stubber.add_response(
            "update_threat_intel_set",
            {},
            {
                "DetectorId": DETECTOR,
                "ThreatIntelSetId": self.set_ids[name],
                "Location": self.location(name),
                "Activate": True,
            },
        )

    def list_text(self, name: str) -> str:
        body = boto3.client("s3", region_name=REGION).get_object(
            Bucket=self.bucket, Key=f"lists/{name}.txt"
        )["Body"]
        return str(body.read().decode())

    def versions(self, name: str) -> int:
        listed = boto3.client("s3", region_name=REGION).list_object_versions(
            Bucket=self.bucket, Prefix=f"lists/{name}.txt"
        )
        return len(listed.get("Versions", []))

    def reports(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(json.loads(message["Body"])["Message"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws(), feed_server() as server:
        aws.reset()
        s3 = boto3.client("s3", region_name=REGION)
        bucket = "playbook-threat-lists-123456789012-us-east-1"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alerts-high")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield World(server, bucket, key_arn, topic, queue_url, monkeypatch)
        aws.reset()


@pytest.fixture
def guardduty(world: World) -> Iterator[Stubber]:
    stubber = Stubber(aws.client("guardduty"))
    with stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def invoke(event: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = handler.lambda_handler(
        event if event is not None else {}, CONTEXT, now=lambda: NOW
    )
    return result


def outcome(result: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(item for item in result["lists"] if item["name"] == name)
    return found


# ------------------------------------------------------------------------ the six feeds


def test_working_feed_is_written_activated_and_reported(world: World, guardduty: Stubber) -> None:
    url = world.server.serve("drop.txt", (FEEDS / "drop.txt").read_text())
    world.configure([{"name": "spamhaus-drop", "url": url, "format": "drop"}])
    world.expect_update(guardduty, "spamhaus-drop")

    result = invoke()

    item = outcome(result, "spamhaus-drop")
    assert item["outcome"] == "updated" and item["entries"] == 5
    assert item["counts"] == {"range containing private address (RFC 1918)": 1}
    text = world.list_text("spamhaus-drop")
    assert "10.0.0.0/8" not in text and text.splitlines()[0] == "1.10.16.0/20"
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket=world.bucket, Key="lists/spamhaus-drop.txt"
    )
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == world.key_arn
    (report,) = world.reports()
    assert report["source"] == "playbook.threat_feed"
    assert report["detail"]["severity"] == "INFO"
    assert "range containing private address (RFC 1918) 1" in report["detail"]["summary"]
    assert report["detail"]["actions"] == [
        "spamhaus-drop: updated; 5 entries; left out: range containing private address (RFC 1918) 1"
    ]


def test_failing_feed_keeps_the_last_good_list_and_reports(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    world.expect_update(guardduty, "incidents")
    invoke()
    world.reports()

    world.server.serve("plain.txt", "", status=503)
    result = invoke()

    item = outcome(result, "incidents")
    assert item["outcome"] == "kept" and "HTTP 503" in item["note"]
    assert world.list_text("incidents") == "185.220.101.7\n"
    assert world.versions("incidents") == 1
    (report,) = world.reports()
    assert report["detail"]["severity"] == "MEDIUM"
    assert "1 kept their last good list" in report["detail"]["title"]


def test_garbage_feed_keeps_the_last_good_list(world: World, guardduty: Stubber) -> None:
    url = world.server.serve("bundle.json", (FEEDS / "bundle.json").read_text())
    world.configure([{"name": "stix", "url": url, "format": "stix"}])
    world.expect_update(guardduty, "stix")
    invoke()
    good = world.list_text("stix")

    world.server.serve("bundle.json", "<html><body>Service temporarily down</body></html>")
    item = outcome(invoke(), "stix")

    assert item["outcome"] == "kept" and "not JSON" in item["note"]
    assert world.list_text("stix") == good and world.versions("stix") == 1


def test_feed_of_nothing_valid_never_uploads_an_empty_list(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("feed.csv", (FEEDS / "feed.csv").read_text())
    world.configure([{"name": "csv", "url": url, "format": "csv", "column": "ip"}])
    world.expect_update(guardduty, "csv")
    invoke()

    world.server.serve("feed.csv", "first_seen,ip\n2025-11-19T22:06:00Z,10.1.2.3\n")
    item = outcome(invoke(), "csv")
    assert item["outcome"] == "kept" and "never uploaded" in item["note"]
    assert item["counts"] == {"private address (RFC 1918)": 1}
    world.server.serve("feed.csv", "")
    assert outcome(invoke(), "csv")["outcome"] == "kept"
    assert world.list_text("csv") == "45.155.205.233\n185.220.101.7\n2a0e:1c80:1::7\n"
    assert world.versions("csv") == 1


def test_empty_feed_on_first_run_writes_nothing(world: World, guardduty: Stubber) -> None:
    url = world.server.serve("plain.txt", "# nothing today\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    assert outcome(invoke(), "incidents")["outcome"] == "kept"
    assert world.versions("incidents") == 0


def test_feed_over_the_cap_is_refused_or_truncated_by_policy(
    world: World, guardduty: Stubber
) -> None:
    body = "".join(f"185.1.{i // 250}.{i % 250 * 1 + 1}\n" for i in range(0, 40, 2))
    url = world.server.serve("plain.txt", body)
    world.configure(
        [{"name": "big", "url": url, "format": "plain"}], MAX_ENTRIES="5", CAP_POLICY="refuse"
    )
    item = outcome(invoke(), "big")
    assert item["outcome"] == "kept" and "update refused (cap policy refuse)" in item["note"]
    assert world.versions("big") == 0

    world.monkeypatch.setenv("CAP_POLICY", "truncate")
    world.expect_update(guardduty, "big")
    item = outcome(invoke(), "big")
    assert item["outcome"] == "updated" and item["entries"] == 5
    assert "kept the first 5 by feed order (cap policy truncate)" in item["note"]
    assert world.list_text("big").splitlines() == [f"185.1.0.{i}" for i in (1, 3, 5, 7, 9)]


def test_unchanged_feed_sends_a_conditional_get_and_writes_nothing(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n185.220.101.8\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    world.expect_update(guardduty, "incidents")
    invoke()

    item = outcome(invoke(), "incidents")  # the Stubber has no second response queued

    assert item["outcome"] == "not-modified"
    first, second = world.server.requests_for("plain.txt")
    assert "If-None-Match" not in first
    assert second["If-None-Match"] == world.server.feeds["/plain.txt"].etag
    assert world.versions("incidents") == 1


def test_feed_whose_normalised_content_is_unchanged_is_not_rewritten(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n185.220.101.8\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    world.expect_update(guardduty, "incidents")
    invoke()

    world.server.serve(
        "plain.txt", "# reordered, with a duplicate\n185.220.101.8\n185.220.101.7\n185.220.101.7\n"
    )
    item = outcome(invoke(), "incidents")

    assert item["outcome"] == "unchanged" and item["counts"] == {entries.DUPLICATE: 1}
    assert world.versions("incidents") == 1


def test_changed_feed_is_written_and_reloaded_again(world: World, guardduty: Stubber) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    world.expect_update(guardduty, "incidents")
    invoke()
    world.server.serve("plain.txt", "185.220.101.7\n91.92.240.5\n")
    world.expect_update(guardduty, "incidents")
    assert outcome(invoke(), "incidents")["outcome"] == "updated"
    assert world.list_text("incidents") == "91.92.240.5\n185.220.101.7\n"
    assert world.versions("incidents") == 2


def test_update_call_that_fails_is_retried_on_the_next_run(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    guardduty.add_client_error(
        "update_threat_intel_set", "InternalServerErrorException", http_status_code=500
    )
    with pytest.raises(Exception, match="InternalServerError"):
        invoke()
    world.expect_update(guardduty, "incidents")
    world.server.serve("plain.txt", "185.220.101.7\n")
    assert outcome(invoke(), "incidents")["outcome"] == "updated"


# ------------------------------------------------------------------------ auth, manual, scope


def test_auth_header_comes_from_the_secret(world: World, guardduty: Stubber) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="feeds/vendor", SecretString=json.dumps({"header": "X-Api-Key", "value": "s3cr3t"})
    )
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure(
        [{"name": "vendor", "url": url, "format": "plain", "auth_secret": "feeds/vendor"}]
    )
    world.expect_update(guardduty, "vendor")
    invoke()
    (request,) = world.server.requests_for("plain.txt")
    assert request["X-Api-Key"] == "s3cr3t"


def test_missing_auth_secret_keeps_the_list_without_fetching(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure(
        [{"name": "vendor", "url": url, "format": "plain", "auth_secret": "feeds/none"}]
    )
    item = outcome(invoke(), "vendor")
    assert item["outcome"] == "kept" and "ResourceNotFoundException" in item["note"]
    assert world.server.requests_for("plain.txt") == []


def test_manual_entries_are_normalised_into_their_own_list(
    world: World, guardduty: Stubber
) -> None:
    world.configure(
        [], MANUAL_ENTRIES=json.dumps(["185.220.101.7", "10.0.0.1", "185.220.101.6/31"])
    )
    world.expect_update(guardduty, logic.MANUAL_LIST)
    item = outcome(invoke(), logic.MANUAL_LIST)
    assert item["counts"] == {"private address (RFC 1918)": 1, entries.COLLAPSED: 1}
    assert world.list_text(logic.MANUAL_LIST) == "185.220.101.6/31\n"


def test_schedule_input_updates_only_the_named_feeds(world: World, guardduty: Stubber) -> None:
    hourly = world.server.serve("hourly.txt", "185.220.101.7\n")
    daily = world.server.serve("daily.txt", "91.92.240.5\n")
    world.configure(
        [
            {"name": "hourly", "url": hourly, "format": "plain"},
            {"name": "daily", "url": daily, "format": "plain"},
        ]
    )
    world.expect_update(guardduty, "hourly")
    result = invoke({"feeds": ["hourly"]})
    assert [item["name"] for item in result["lists"]] == ["hourly"]
    assert world.server.requests_for("daily.txt") == []


def test_http_feed_is_refused_without_the_loopback_switch(world: World, guardduty: Stubber) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure([{"name": "incidents", "url": url, "format": "plain"}])
    world.monkeypatch.delenv("THREAT_FEED_ALLOW_HTTP_LOOPBACK")
    item = outcome(invoke(), "incidents")
    assert item["outcome"] == "kept" and "must be https://" in item["note"]
    assert world.server.requests_for("plain.txt") == []


def test_feed_larger_than_the_limit_is_not_read_to_the_end(
    world: World, guardduty: Stubber
) -> None:
    url = world.server.serve("plain.txt", "185.220.101.7\n" * 1000)
    world.configure([{"name": "incidents", "url": url, "format": "plain"}], MAX_FEED_BYTES="1000")
    item = outcome(invoke(), "incidents")
    assert item["outcome"] == "kept" and "over the limit of 1000" in item["note"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([], "expected a JSON object"),
        ({"feeds": []}, "non-empty list"),
        ({"detail-type": "Scheduled Event", "source": "attacker"}, "not 'aws.events'"),
        ({"detail-type": "GuardDuty Finding", "source": "aws.guardduty"}, "unexpected event"),
        ({"action": "sweep"}, "unknown keys"),
    ],
)
def test_other_events_are_rejected_not_retried(world: World, event: Any, reason: str) -> None:
    result = handler.lambda_handler(event, CONTEXT)
    assert result["status"] == "rejected" and reason in result["reason"]


def test_unknown_feed_name_is_a_clear_error(world: World) -> None:
    world.configure([])
    with pytest.raises(logic.ConfigError, match=r"unknown feeds \['nope'\]"):
        invoke({"feeds": ["nope"]})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FEEDS", "[{", "FEEDS is not valid JSON"),
        ("FEEDS", '[{"name": "a", "url": "https://x", "format": "xml"}]', "format 'xml'"),
        ("FEEDS", '[{"name": "a", "format": "plain"}]', "FEEDS\\[0\\] has no url"),
        ("CAP_POLICY", "drop", "CAP_POLICY"),
        ("ALLOWLIST_CIDRS", "10.0.0.1/8", "ALLOWLIST_CIDRS"),
    ],
)
def test_bad_environment_names_the_variable(
    world: World, variable: str, value: str, message: str
) -> None:
    world.configure([])
    world.monkeypatch.setenv(variable, value)
    with pytest.raises(logic.ConfigError, match=message):
        logic.Config.from_env()


def test_feed_without_a_threat_intel_set_is_a_config_error(world: World) -> None:
    world.configure([])
    world.monkeypatch.setenv("FEEDS", '[{"name": "a", "url": "https://x", "format": "plain"}]')
    with pytest.raises(logic.ConfigError, match=r"no threat intel set for \['a'\]"):
        logic.Config.from_env()


def test_every_call_the_updater_makes_is_declared(world: World) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="feeds/vendor", SecretString="Bearer token"
    )
    url = world.server.serve("plain.txt", "185.220.101.7\n")
    world.configure(
        [{"name": "vendor", "url": url, "format": "plain", "auth_secret": "feeds/vendor"}]
    )
    world.monkeypatch.setenv("REPORT_EVENT_BUS", "default")
    with record_calls() as calls:
        stubber = Stubber(aws.client("guardduty"))
        with stubber:
            world.expect_update(stubber, "vendor")
            invoke()
            stubber.assert_no_pending_responses()
    # The Stubber answers before the recording hook sees the call (it registers first);
    # the assertion above proves the call was made.
    calls.add("guardduty:UpdateThreatIntelSet")
    assert calls == {
        "s3:GetObject",
        "s3:PutObject",
        "secretsmanager:GetSecretValue",
        "guardduty:UpdateThreatIntelSet",
        "sns:Publish",
        "events:PutEvents",
    }
    assert calls <= permissions.actions(PERMISSIONS)
