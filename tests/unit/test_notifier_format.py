"""The notifier's pure side: recognising events and rendering every channel's payload."""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.notifier import logic
from functions.notifier.logic import Kind, Notification

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def teams_as_read(payload: dict[str, Any]) -> str:
    """The card as Teams shows it: its Markdown escapes (a backslash before a character,
    doubled in JSON) resolved."""
    return re.sub(r"\\\\(.)", r"\1", json.dumps(payload, ensure_ascii=False))


def every_rendering(n: Notification) -> dict[str, str]:
    """Each channel's output as the text a reader (or a JSON parser) receives."""
    return {
        "slack": json.dumps(logic.slack_payload(n), ensure_ascii=False),
        "teams": teams_as_read(logic.teams_payload(n)),
        "chime": logic.chime_payload(n)["Content"],
        "email": logic.email_body(n),
    }


@dataclass(frozen=True)
class Expected:
    kind: Kind
    title: str
    severity: str
    account: str
    region: str
    resource: str
    link: str | None


SAMPLES = {
    "guardduty_ec2_malicious_ip.json": Expected(
        kind=Kind.GUARDDUTY,
        title="EC2 instance i-0a1b2c3d4e5f67890 is communicating outbound with a custom "
        "threat list IP address.",
        severity="MEDIUM",
        account="123456789012",
        region="us-east-1",
        resource="i-0a1b2c3d4e5f67890",
        link="https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1"
        "#/findings?macros=current&fId=46ba0ac2845071e23ccdeb2ae03bfdea",
    ),
    "guardduty_ec2_port_probe.json": Expected(
        kind=Kind.GUARDDUTY,
        title="Unprotected port on EC2 instance i-0fedcba9876543210 is being probed.",
        severity="LOW",
        account="123456789012",
        region="eu-west-1",
        resource="i-0fedcba9876543210",
        link="https://eu-west-1.console.aws.amazon.com/guardduty/home?region=eu-west-1"
        "#/findings?macros=current&fId=a2c6b8f1e9d04b5e8f0a1b2c3d4e5f60",
    ),
    "guardduty_iam_malicious_ip_caller.json": Expected(
        kind=Kind.GUARDDUTY,
        title="Reconnaissance API ListBuckets was invoked from an IP address on a custom "
        "threat list.",
        severity="MEDIUM",
        account="210987654321",
        region="ap-southeast-2",
        resource="ci-deployer (AKIAIOSFODNN7EXAMPLE)",
        link="https://ap-southeast-2.console.aws.amazon.com/guardduty/home?region=ap-southeast-2"
        "#/findings?macros=current&fId=30bf285e52a1e405084ff6ec28e06e17",
    ),
    "securityhub_findings_imported.json": Expected(
        kind=Kind.SECURITYHUB,
        title="S3 general purpose buckets should block public access",
        severity="HIGH",
        account="123456789012",
        region="us-east-1",
        resource="arn:aws:s3:::example-public-assets",
        link="https://us-east-1.console.aws.amazon.com/securityhub/home?region=us-east-1"
        "#/findings?search=Id%3D%255Coperator%255C%253AEQUALS%255C%253A"
        "arn%253Aaws%253Asecurityhub%253Aus-east-1%253A123456789012%253Asecurity-control"
        "%252FS3.8%252Ffinding%252F0e3a8f1c-6b2d-4c8e-9f41-2d7a5b9c1e30",
    ),
    "securityhub_findings_custom_action.json": Expected(
        kind=Kind.SECURITYHUB_ACTION,
        title="SendToSlack: 2 Security Hub findings",
        severity="CRITICAL",
        account="111122223333",
        region="us-west-2",
        resource="arn:aws:ec2:us-west-2:111122223333:instance/i-0123abcd4567ef890",
        link="https://us-west-2.console.aws.amazon.com/securityhub/home?region=us-west-2"
        "#/findings?search=Id%3D%255Coperator%255C%253AEQUALS%255C%253A"
        "arn%253Aaws%253Asecurityhub%253Aus-west-2%253A111122223333%253Asecurity-control"
        "%252FEC2.19%252Ffinding%252F5d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
    ),
    "config_rules_compliance_change.json": Expected(
        kind=Kind.CONFIG,
        title="example-public-assets is NON_COMPLIANT with s3-bucket-public-read-prohibited",
        severity="MEDIUM",
        account="123456789012",
        region="eu-central-1",
        resource="example-public-assets",
        link="https://eu-central-1.console.aws.amazon.com/config/home?region=eu-central-1"
        "#/resources/details?resourceId=example-public-assets"
        "&resourceType=AWS%3A%3AS3%3A%3ABucket",
    ),
    "playbook_remediation.json": Expected(
        kind=Kind.REMEDIATION,
        title="Blocked 198.51.100.23 in WAF",
        severity="HIGH",
        account="123456789012",
        region="us-east-1",
        resource="arn:aws:wafv2:us-east-1:123456789012:regional/ipset/playbook-blocklist-ipv4",
        link=None,
    ),
    "health_event.json": Expected(
        kind=Kind.EVENT,
        title="AWS Health Event",
        severity="UNKNOWN",
        account="123456789012",
        region="us-east-1",
        resource="i-0a1b2c3d4e5f67890",
        link=None,
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_event_is_recognised(name: str) -> None:
    expected = SAMPLES[name]
    n = logic.parse(json.dumps(load(name)))

    assert (n.kind, n.title, n.severity) == (expected.kind, expected.title, expected.severity)
    assert (n.account, n.region, n.link) == (expected.account, expected.region, expected.link)
    assert any(expected.resource in resource for resource in n.resources)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_channel_shows_the_essentials(name: str) -> None:
    expected = SAMPLES[name]
    n = logic.parse(json.dumps(load(name)))

    for channel, text in every_rendering(n).items():
        for value in (expected.severity, expected.account, expected.region, expected.resource):
            assert value in text, f"{channel} lacks {value!r}"
        # The e-mail and Chime put the title in one line; the cards show it whole too.
        assert expected.title in text, f"{channel} lacks the title"
        if expected.link:
            assert expected.link in text, f"{channel} lacks the console link"
    assert n.severity in logic.email_subject(n)


def test_slack_payload_structure() -> None:
    n = logic.parse(json.dumps(load("guardduty_ec2_malicious_ip.json")))
    payload = logic.slack_payload(n)

    header, fields, summary, details, actions = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": n.title}}
    assert {"type": "mrkdwn", "text": "*Severity*\nMEDIUM"} in fields["fields"]
    assert summary["text"]["text"] == n.summary
    assert "*Remote IP:* 198.51.100.23 (Netherlands, Example Hosting)" in details["text"]["text"]
    assert actions["elements"][0]["url"] == n.link
    assert payload["text"].startswith("[MEDIUM] GuardDuty: EC2 instance")


def test_teams_payload_is_an_adaptive_card_message() -> None:
    n = logic.parse(json.dumps(load("securityhub_findings_imported.json")))
    payload = logic.teams_payload(n)

    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == n.title
    assert card["body"][1]["color"] == "Attention"
    facts = {fact["title"]: fact["value"] for fact in card["body"][-1]["facts"]}
    assert facts["Account"] == "123456789012"
    assert facts["Control"] == "S3.8"
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open in AWS console", "url": n.link}
    ]


def test_guardduty_details_cover_each_action_type() -> None:
    probe = dict(logic.parse(json.dumps(load("guardduty_ec2_port_probe.json"))).details)
    api = dict(logic.parse(json.dumps(load("guardduty_iam_malicious_ip_caller.json"))).details)

    assert probe["Probing IPs"] == (
        "192.0.2.44 (Germany, Example Transit), 192.0.2.45 (Germany, Example Transit)"
    )
    assert probe["Probed ports"] == "22 (SSH), 3389 (RDP)"
    assert api["API call"] == "s3.amazonaws.com ListBuckets"
    assert api["Remote IP"] == "203.0.113.200 (Singapore, Example Cloud)"


def test_guardduty_sample_findings_are_marked() -> None:
    event = load("guardduty_ec2_malicious_ip.json")
    event["detail"]["service"]["additionalInfo"]["sample"] = True

    assert logic.parse(json.dumps(event)).title.startswith("[SAMPLE] EC2 instance")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.0, "LOW"),
        (1.0, "LOW"),
        (3.9, "LOW"),
        (4.0, "MEDIUM"),
        (6.9, "MEDIUM"),
        (7.0, "HIGH"),
        (8, "HIGH"),
        (8.9, "HIGH"),
        (9.0, "CRITICAL"),
        (10, "CRITICAL"),
        (10.1, "UNKNOWN"),
        (-1, "UNKNOWN"),
        (float("nan"), "UNKNOWN"),
        (True, "UNKNOWN"),
        ("8", "UNKNOWN"),
        (None, "UNKNOWN"),
    ],
)
def test_guardduty_severity_bands(value: Any, label: str) -> None:
    assert logic.guardduty_severity(value) == label


@pytest.mark.parametrize(
    ("severity", "label"),
    [
        ({"Label": "CRITICAL", "Normalized": 10}, "CRITICAL"),
        ({"Label": "informational"}, "INFORMATIONAL"),
        ({"Normalized": 0}, "INFORMATIONAL"),
        ({"Normalized": 1}, "LOW"),
        ({"Normalized": 39}, "LOW"),
        ({"Normalized": 40}, "MEDIUM"),
        ({"Normalized": 70}, "HIGH"),
        ({"Normalized": 90}, "CRITICAL"),
        ({"Normalized": 101}, "UNKNOWN"),
        ({"Label": "SEVERE"}, "UNKNOWN"),
        ("HIGH", "UNKNOWN"),
    ],
)
def test_securityhub_severity_label_and_normalized_bands(severity: Any, label: str) -> None:
    assert logic.securityhub_severity(severity) == label


@pytest.mark.parametrize(
    ("compliance", "severity"),
    [
        ("NON_COMPLIANT", "MEDIUM"),
        ("COMPLIANT", "INFORMATIONAL"),
        ("NOT_APPLICABLE", "LOW"),
        ("INSUFFICIENT_DATA", "LOW"),
    ],
)
def test_config_compliance_sets_severity(compliance: str, severity: str) -> None:
    event = load("config_rules_compliance_change.json")
    event["detail"]["newEvaluationResult"]["complianceType"] = compliance

    n = logic.parse(json.dumps(event))

    assert n.severity == severity
    assert compliance in n.title


def test_remediation_report_lists_the_actions_taken() -> None:
    n = logic.parse(json.dumps(load("playbook_remediation.json")))

    assert "Actions taken:\n- Added 198.51.100.23/32 to IP set" in n.summary
    assert dict(n.details)["Remediator"] == "waf_blocker"


def test_remediation_info_severity_is_informational() -> None:
    event = load("playbook_remediation.json")
    event["detail"]["severity"] = "INFO"

    assert logic.parse(json.dumps(event)).severity == "INFORMATIONAL"


def test_many_findings_make_one_message_with_a_capped_list() -> None:
    event = load("securityhub_findings_imported.json")
    template = event["detail"]["findings"][0]
    event["detail"]["findings"] = [
        {**template, "Id": f"finding-{i}", "Title": f"Finding number {i}"} for i in range(25)
    ]
    event["detail"]["findings"][17]["Severity"] = {"Label": "CRITICAL"}

    n = logic.parse(json.dumps(event))

    assert n.title == "25 Security Hub findings"
    assert n.severity == "CRITICAL"
    lines = n.summary.split("\n")
    assert len(lines) == logic.MAX_LISTED_FINDINGS + 1
    assert lines[0].startswith("• [CRITICAL] Finding number 17")
    assert lines[-1] == "and 15 more"
    assert n.link is not None and n.link.endswith("finding-17")
    assert "and 15 more" in logic.slack_payload(n)["blocks"][2]["text"]["text"]


def test_securityhub_event_without_findings_still_renders() -> None:
    event = load("securityhub_findings_custom_action.json")
    event["detail"]["findings"] = []

    n = logic.parse(json.dumps(event))

    assert (n.title, n.severity, n.link) == (
        "SendToSlack: 0 Security Hub findings",
        "UNKNOWN",
        None,
    )
    assert n.summary == "The event carried no findings."


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("eu-west-3", "https://eu-west-3.console.aws.amazon.com/"),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com/"),
        ("cn-north-1", "https://console.amazonaws.cn/"),
    ],
)
def test_console_links_use_the_partition_host(region: str, host: str) -> None:
    link = logic.guardduty_link(region, "abc")

    assert link is not None and link.startswith(host)
    assert f"region={region}#" in link


@pytest.mark.parametrize("region", ["", "evil.example.com/x", "us-east-1/../", "US-EAST-1"])
def test_no_link_for_a_malformed_region(region: str) -> None:
    assert logic.guardduty_link(region, "abc") is None
    assert logic.config_link(region, "bucket", "AWS::S3::Bucket") is None


def test_generic_json_shows_source_detail_type_and_an_excerpt() -> None:
    event = {
        "version": "0",
        "source": "aws.backup",
        "detail-type": "Backup Job State Change",
        "account": "123456789012",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"state": "FAILED", "huge": ["x" * 100] * 100},
    }

    n = logic.parse(json.dumps(event))

    assert (n.kind, n.title, n.account, n.region) == (
        Kind.EVENT,
        "Backup Job State Change",
        "123456789012",
        "eu-west-1",
    )
    assert dict(n.details)["Event source"] == "aws.backup"
    assert '"state": "FAILED"' in n.summary
    assert len(n.summary) <= 1500 and n.summary.endswith("…")


def test_any_other_json_is_rendered_as_an_excerpt() -> None:
    n = logic.parse('[1, {"alarm": "cpu"}]', subject="CloudWatch alarm")

    assert (n.kind, n.title, n.severity) == (Kind.JSON, "CloudWatch alarm", "UNKNOWN")
    assert '"alarm": "cpu"' in n.summary


@pytest.mark.parametrize("message", ["{not json", "Disk almost full\non web-1", ""])
def test_plain_text_and_bad_json_are_text(message: str) -> None:
    n = logic.parse(message)

    assert n.kind is Kind.TEXT
    assert n.title == (message.split("\n")[0] or "(empty message)")
    assert n.summary == message


def test_plain_text_uses_the_sns_subject_as_title() -> None:
    n = logic.parse("body", subject="Nightly check failed")

    assert (n.title, n.summary) == ("Nightly check failed", "body")


HOSTILE = "<!channel> & <https://evil.example|click here> @All @present"


def test_slack_text_is_escaped_everywhere() -> None:
    event = load("guardduty_ec2_malicious_ip.json")
    event["detail"]["title"] = HOSTILE
    event["detail"]["description"] = HOSTILE
    n = logic.parse(json.dumps(event))

    payload = json.dumps(logic.slack_payload(n))

    assert "<!channel>" not in payload and "<https://evil" not in payload
    escaped = "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;"
    assert logic.slack_payload(n)["blocks"][0]["text"]["text"].startswith(escaped)
    assert escaped in logic.slack_payload(n)["blocks"][2]["text"]["text"]


def test_chime_mentions_of_the_whole_room_are_defused() -> None:
    n = logic.parse(HOSTILE)

    content = logic.chime_payload(n)["Content"]

    assert "@All" not in content and "@present" not in content
    assert "@\u200bAll" in content and "@\u200bpresent" in content


def test_email_subject_is_ascii_single_line_and_short() -> None:
    event = load("guardduty_ec2_malicious_ip.json")
    event["detail"]["title"] = "Überwachung\nfür «Prod» — 🚨 " + "x" * 300

    subject = logic.email_subject(logic.parse(json.dumps(event)))

    assert subject.isascii() and "\n" not in subject
    assert len(subject) < 100
    assert subject.startswith("[MEDIUM] GuardDuty: Uberwachung fur Prod")
    assert subject.endswith("...")


def test_long_values_are_cut_to_each_service_limit() -> None:
    huge = "é" * 50_000 + "🚨" * 10_000
    event = load("securityhub_findings_imported.json")
    finding = event["detail"]["findings"][0]
    finding["Title"] = huge
    finding["Description"] = "&" * 50_000
    finding["Resources"] = [{"Type": "AwsS3Bucket", "Id": f"{i}{huge}"} for i in range(50)]
    n = logic.parse(json.dumps(event))

    slack = logic.slack_payload(n)
    assert len(slack["blocks"][0]["text"]["text"]) <= logic.SLACK_HEADER_LIMIT
    summary = slack["blocks"][2]["text"]["text"]
    assert len(summary) <= logic.SLACK_TEXT_LIMIT and summary.endswith("&amp;…")
    assert all(len(f["text"]) <= logic.SLACK_FIELD_LIMIT for f in slack["blocks"][1]["fields"])
    assert len(n.resources) == logic.MAX_RESOURCES
    # Chime counts characters, Teams rejects messages over 28 KB, SNS over 256 KB.
    assert len(logic.chime_payload(n)["Content"]) <= logic.CHIME_CONTENT_LIMIT
    assert logic.chime_payload(n)["Content"].endswith(n.link or "")
    assert len(json.dumps(logic.teams_payload(n), ensure_ascii=False).encode()) < 28_000
    assert len(logic.email_body(n).encode()) < 256 * 1024


def test_control_characters_and_lone_surrogates_are_removed() -> None:
    n = logic.parse('{"source": "x", "detail-type": "Bad\\u0000 \\ud800 \\u001b[31mtype"}')

    assert n.title == "Bad ? [31mtype"
    logic.email_body(n).encode("utf-8")


# ----------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)

KNOWN_EVENTS = [
    ("aws.guardduty", "GuardDuty Finding"),
    ("aws.securityhub", "Security Hub Findings - Imported"),
    ("aws.securityhub", "Security Hub Findings - Custom Action"),
    ("aws.config", "Config Rules Compliance Change"),
    ("playbook.anything", "Playbook Remediation"),
]
FIELD_NAMES = [
    "title", "severity", "id", "region", "resource", "service", "findings", "Title",
    "Severity", "Resources", "Id", "newEvaluationResult", "resourceId", "actions", "summary",
]  # fmt: skip


@st.composite
def known_shaped_events(draw: st.DrawFn) -> dict[str, Any]:
    """A recognised source/detail-type with a detail full of wrong types and odd values."""
    source, detail_type = draw(st.sampled_from(KNOWN_EVENTS))
    keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=5)
    detail = draw(st.dictionaries(keys, json_values, max_size=8))
    region = draw(st.sampled_from(["us-east-1", "", "bad region"]) | st.text(max_size=12))
    return {"source": source, "detail-type": detail_type, "region": region, "detail": detail}


def assert_renders_within_limits(n: Notification) -> None:
    assert n.title and n.severity in logic.SEVERITIES
    slack = logic.slack_payload(n)
    json.dumps(slack, allow_nan=False)
    json.dumps(logic.teams_payload(n), allow_nan=False).encode("utf-8")
    assert len(slack["blocks"][0]["text"]["text"]) <= logic.SLACK_HEADER_LIMIT
    assert len(logic.chime_payload(n)["Content"]) <= logic.CHIME_CONTENT_LIMIT
    subject = logic.email_subject(n)
    assert 0 < len(subject) < 100 and subject.isascii()
    assert not set(subject) & set(string.whitespace.replace(" ", ""))
    logic.email_body(n).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(message=st.text(max_size=3000), subject=st.none() | st.text(max_size=200))
def test_any_text_parses_and_renders(message: str, subject: str | None) -> None:
    assert_renders_within_limits(logic.parse(message, subject=subject))


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_parses_and_renders(value: Any) -> None:
    assert_renders_within_limits(logic.parse(json.dumps(value)))


@settings(max_examples=300, deadline=None)
@given(event=known_shaped_events())
def test_recognised_events_with_junk_fields_parse_and_render(event: dict[str, Any]) -> None:
    assert_renders_within_limits(logic.parse(json.dumps(event)))


@pytest.mark.parametrize("message", ["[" * 100_000, "1" * 5000, '{"a": NaN}', "\ud800"])
def test_pathological_messages_do_not_raise(message: str) -> None:
    assert_renders_within_limits(logic.parse(message))


def test_remediation_report_subject_is_what_sns_accepts() -> None:
    from functions.common.report import sns_subject

    subject = sns_subject("[HIGH] Blocked\n203.0.113.9 — café " + "x" * 200)
    assert len(subject) < 100
    assert subject.isascii() and "\n" not in subject
    assert subject.startswith("[HIGH] Blocked 203.0.113.9 cafe xxx")
    assert subject.endswith("...")


def test_teams_cards_never_turn_finding_text_into_links_or_formatting() -> None:
    """Adaptive Card TextBlocks and Fact values render Markdown: untrusted text such as a
    Kubernetes request URI or a Security Hub description must not become a disguised
    link, emphasis or a list."""
    event = load("gd_waf_kubernetes_tor_ip_caller.json")
    disguised = "[Open the runbook](https://attacker.example/steal)"
    event["detail"]["title"] = f"**Urgent** {disguised}"
    event["detail"]["description"] = f"- step one\n1. {disguised}\n_now_ `code` # heading"
    action = event["detail"]["service"]["action"]["kubernetesApiCallAction"]
    action["requestUri"] = f"/api/v1/namespaces/{disguised}"
    card = logic.teams_payload(logic.parse(json.dumps(event)))["attachments"][0]["content"]
    texts = [block["text"] for block in card["body"] if block["type"] == "TextBlock"]
    (facts,) = [block["facts"] for block in card["body"] if block["type"] == "FactSet"]
    texts += [fact["value"] for fact in facts] + [fact["title"] for fact in facts]
    for text in texts:
        # every Markdown control character is preceded by a backslash
        assert not re.search(r"(?<!\\)[\[\]()*_`#]", text), text
        assert not re.search(r"^\s*(?:[-+]|\d+[.)])\s", text, re.MULTILINE), text
    assert any("\\[Open the runbook\\]\\(https://attacker.example/steal\\)" in t for t in texts)
    shown = teams_as_read(logic.teams_payload(logic.parse(json.dumps(event))))
    assert disguised in shown, "the reader still sees the text itself"


def test_rds_login_findings_show_the_remote_address_and_the_attempts() -> None:
    n = logic.parse(json.dumps(load("gd_waf_rds_malicious_ip_failed_login.json")))
    details = dict(n.details)
    assert details["Remote IP"] == "141.98.11.23 (Lithuania, UAB Host Baltic)"
    assert details["Login attempts"] == "postgres via psql: 12 failed, 0 succeeded"


def test_cloudwatch_alarms_read_as_alarms() -> None:
    """The shape CloudWatch publishes to SNS when an alarm changes state (the remediators'
    error and dead-letter alarms publish to the severity topics)."""
    alarm = {
        "AlarmName": "playbook-waf-blocker-errors",
        "AlarmDescription": "The waf_blocker remediator failed; see its log group.",
        "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": "2026-12-01T10:00:00.000+0000",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [2.0 (02/12/26 09:55:00)] was "
        "greater than the threshold (0.0).",
        "StateChangeTime": "2026-12-02T10:00:41.000+0000",
        "Region": "US East (N. Virginia)",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:playbook-waf-blocker-errors",
        "OldStateValue": "OK",
        "OKActions": [],
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:playbook-high"],
        "InsufficientDataActions": [],
        "Trigger": {
            "MetricName": "Errors",
            "Namespace": "AWS/Lambda",
            "StatisticType": "Statistic",
            "Statistic": "SUM",
            "Unit": None,
            "Dimensions": [{"value": "playbook-waf-blocker", "name": "FunctionName"}],
            "Period": 300,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0.0,
            "TreatMissingData": "notBreaching",
        },
    }
    n = logic.parse(json.dumps(alarm), subject='ALARM: "playbook-waf-blocker-errors"')
    assert (n.kind, n.severity, n.account, n.region) == (
        Kind.ALARM,
        "HIGH",
        "123456789012",
        "us-east-1",
    )
    assert n.title == "ALARM: playbook-waf-blocker-errors"
    assert n.resources == ("FunctionName=playbook-waf-blocker",)
    assert "see its log group" in n.summary and "Threshold Crossed" in n.summary
    assert dict(n.details)["Metric"] == "AWS/Lambda Errors"
    assert n.link is not None and "alarm/playbook-waf-blocker-errors" in n.link
    cleared = logic.parse(json.dumps(alarm | {"NewStateValue": "OK", "OldStateValue": "ALARM"}))
    assert cleared.severity == "INFORMATIONAL"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("gd_threat_list_custom_inbound.json", "playbook-incidents"),
        ("gd_threat_list_custom_outbound.json", "playbook-stix"),
        ("gd_waf_iam_malicious_ip_caller_ipv6.json", "ProofPoint"),
    ],
)
def test_guardduty_notification_names_the_threat_list(fixture: str, expected: str) -> None:
    """The loop of the threat_lists module closes when people can see which list an
    address came from: GuardDuty's threatListName is shown once (it appears in
    additionalInfo and in the evidence)."""
    event = json.loads((EVENTS / fixture).read_text())
    details = dict(logic.parse(json.dumps(event)).details)
    assert details["Threat list"] == expected


def test_threat_list_name_as_a_plain_additional_info_field() -> None:
    event = json.loads((EVENTS / "gd_threat_list_custom_inbound.json").read_text())
    service = event["detail"]["service"]
    service["additionalInfo"] = {"threatListName": "GeneratedFindingThreatListName", "sample": True}
    del service["evidence"]
    details = dict(logic.parse(json.dumps(event)).details)
    assert details["Threat list"] == "GeneratedFindingThreatListName"
