"""Turn what arrives on the alert topics into chat and e-mail notifications.

:func:`parse` recognises the events the playbooks route to the topics (GuardDuty findings,
Security Hub imported findings and custom actions, AWS Config compliance changes, the
playbook remediation report) in the shapes AWS documents, and renders anything else
(other JSON, plain text) generically. The ``*_payload`` and ``email_*`` functions are pure;
:func:`deliver` does the I/O: webhook POSTs through urllib and the e-mail publish through
:mod:`functions.common.aws`.

Every string taken from a message is untrusted: it is cleaned of control characters and
unpaired surrogates, bounded in length, and escaped for the target format, so no message
can break a payload, exceed a service limit or trigger a mass mention.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import math
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from functions.common import aws, report

logger = Logger(service="notifier", child=True)

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNKNOWN")
_SEVERITY_RANK = {label: rank for rank, label in enumerate(SEVERITIES)}

# Limits of a Notification, well inside every target so that formatting only has to cut
# further where a service is stricter (Slack header 150, Chime 4096, SNS subject 99).
TITLE_LIMIT = 200
SUMMARY_LIMIT = 2000
DETAIL_KEY_LIMIT = 40
DETAIL_VALUE_LIMIT = 300
MAX_DETAILS = 12
MAX_RESOURCES = 10
MAX_LISTED_FINDINGS = 10
_FINDING_LINE_LIMIT = 180
_JSON_EXCERPT_LIMIT = 1500
_LINK_LIMIT = 2000

SLACK_HEADER_LIMIT = 150
SLACK_TEXT_LIMIT = 3000
SLACK_FIELD_LIMIT = 2000
CHIME_CONTENT_LIMIT = 4096

WEBHOOK_CACHE_SECONDS = 300.0
HTTP_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 3
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 8.0


class Kind(StrEnum):
    GUARDDUTY = "guardduty"
    SECURITYHUB = "securityhub"
    SECURITYHUB_ACTION = "securityhub_custom_action"
    CONFIG = "config"
    ALARM = "alarm"
    REMEDIATION = "remediation"
    EVENT = "event"
    JSON = "json"
    TEXT = "text"


_SOURCE_LABELS = {
    Kind.GUARDDUTY: "GuardDuty",
    Kind.SECURITYHUB: "Security Hub",
    Kind.SECURITYHUB_ACTION: "Security Hub custom action",
    Kind.CONFIG: "AWS Config",
    Kind.ALARM: "CloudWatch alarm",
    Kind.REMEDIATION: "Playbook remediation",
    Kind.EVENT: "EventBridge event",
    Kind.JSON: "JSON message",
    Kind.TEXT: "Message",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """What every channel renders: cleaned, bounded text, never raw message values."""

    kind: Kind
    title: str
    severity: str
    account: str
    region: str
    resources: tuple[str, ...]
    summary: str
    details: tuple[tuple[str, str], ...]
    link: str | None

    @property
    def source(self) -> str:
        return _SOURCE_LABELS[self.kind]


# --------------------------------------------------------------------------- text helpers

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _units(text: str) -> int:
    """Length in UTF-16 code units: what JavaScript-based limits count, never below len()."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _truncate(text: str, limit: int) -> str:
    if _units(text) <= limit:
        return text
    head = text.encode("utf-16-le", "surrogatepass")[: (limit - 1) * 2]
    return head.decode("utf-16-le", "ignore") + "…"


def _prune(value: Any, depth: int = 4, breadth: int = 25) -> Any:
    """A bounded copy of JSON data, so rendering an excerpt never recurses deeply."""
    if isinstance(value, dict):
        if depth == 0:
            return "{…}"
        items = list(value.items())
        pruned = {str(k): _prune(v, depth - 1, breadth) for k, v in items[:breadth]}
        if len(items) > breadth:
            pruned["…"] = f"{len(items) - breadth} more keys"
        return pruned
    if isinstance(value, list):
        if depth == 0:
            return "[…]"
        pruned_list = [_prune(v, depth - 1, breadth) for v in value[:breadth]]
        if len(value) > breadth:
            pruned_list.append(f"… {len(value) - breadth} more items")
        return pruned_list
    return value


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(_prune(value, depth=3), ensure_ascii=False, default=str)
    # JSON escapes can produce lone surrogates, which UTF-8 (SNS, HTTP bodies) cannot carry.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_CHARACTERS.sub("", text)


def _line(value: Any, limit: int) -> str:
    return _truncate(" ".join(_clean(value).split()), limit)


def _first(limit: int, *values: Any) -> str:
    """The first value that is still non-empty once cleaned (fallback chains)."""
    for value in values:
        text = _line(value, limit)
        if text:
            return text
    return ""


def _block(value: Any, limit: int) -> str:
    lines = [" ".join(line.split()) for line in _clean(value).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return _truncate(text, limit)


def _json_excerpt(value: Any) -> str:
    text = json.dumps(_prune(value), indent=2, ensure_ascii=False, default=str)
    return _truncate(_clean(text), _JSON_EXCERPT_LIMIT)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _details(pairs: Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    cleaned = (
        (_line(key, DETAIL_KEY_LIMIT), _line(value, DETAIL_VALUE_LIMIT)) for key, value in pairs
    )
    return tuple((key, value) for key, value in cleaned if key and value)[:MAX_DETAILS]


def _resources(values: Iterable[Any]) -> tuple[str, ...]:
    unique: dict[str, None] = {}
    for value in values:
        text = _line(value, DETAIL_VALUE_LIMIT)
        if text:
            unique.setdefault(text)
    return tuple(unique)[:MAX_RESOURCES]


def _joined(values: Iterable[str]) -> str:
    return _line(", ".join(dict.fromkeys(v for v in values if v)), DETAIL_VALUE_LIMIT)


# --------------------------------------------------------------------------- severities


def guardduty_severity(value: Any) -> str:
    """GuardDuty's documented bands: 9.0-10.0 CRITICAL, 7.0-8.9 HIGH, 4.0-6.9 MEDIUM, else LOW."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "UNKNOWN"
    if not math.isfinite(value) or not 0 <= value <= 10:
        return "UNKNOWN"
    if value >= 9:
        return "CRITICAL"
    if value >= 7:
        return "HIGH"
    if value >= 4:
        return "MEDIUM"
    return "LOW"


def securityhub_severity(severity: Any) -> str:
    """ASFF ``Severity``: the Label, else Normalized mapped the way Security Hub maps it."""
    severity = _dict(severity)
    label = severity.get("Label")
    if isinstance(label, str) and label.upper() in _SEVERITY_RANK:
        return label.upper()
    normalized = severity.get("Normalized")
    if isinstance(normalized, bool) or not isinstance(normalized, int | float):
        return "UNKNOWN"
    if not math.isfinite(normalized) or not 0 <= normalized <= 100:
        return "UNKNOWN"
    if normalized >= 90:
        return "CRITICAL"
    if normalized >= 70:
        return "HIGH"
    if normalized >= 40:
        return "MEDIUM"
    if normalized >= 1:
        return "LOW"
    return "INFORMATIONAL"


def _label_severity(value: Any) -> str:
    label = _line(value, 20).upper()
    if label == "INFO":
        return "INFORMATIONAL"
    return label if label in _SEVERITY_RANK else "UNKNOWN"


# --------------------------------------------------------------------------- console links

_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d{1,2}")


def _console(region: str, path: str) -> str | None:
    """A console URL for ``region``; None for malformed regions or unknown partitions."""
    if not _REGION.fullmatch(region):
        return None
    if region.startswith("cn-"):
        host = "https://console.amazonaws.cn"
    elif region.startswith("us-gov-"):
        host = "https://console.amazonaws-us-gov.com"
    else:
        host = f"https://{region}.console.aws.amazon.com"
    url = f"{host}/{path}"
    return url if len(url) <= _LINK_LIMIT else None


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def guardduty_link(region: str, finding_id: str) -> str | None:
    if not finding_id:
        return None
    fragment = f"#/findings?macros=current&fId={_quote(finding_id)}"
    return _console(region, f"guardduty/home?region={region}{fragment}")


def securityhub_link(region: str, finding_id: str) -> str | None:
    if not finding_id:
        return None
    # The console's search filter is itself URL-encoded inside the fragment, so the id is
    # encoded twice (the same form Security Hub uses in its own links).
    search = "Id%3D%255Coperator%255C%253AEQUALS%255C%253A" + _quote(_quote(finding_id))
    return _console(region, f"securityhub/home?region={region}#/findings?search={search}")


def config_link(region: str, resource_id: str, resource_type: str) -> str | None:
    if not resource_id or not resource_type:
        return None
    query = f"resourceId={_quote(resource_id)}&resourceType={_quote(resource_type)}"
    return _console(region, f"config/home?region={region}#/resources/details?{query}")


# --------------------------------------------------------------------------- parsing


def parse(message: str, subject: str | None = None) -> Notification:
    """Recognise ``message`` (an SNS message body); never raises for any input string.

    ``subject`` is the SNS Subject, used as the title of messages that carry none.
    """
    try:
        event = json.loads(message)
    except (ValueError, RecursionError):
        return _from_text(message, subject)
    if isinstance(event, dict):
        detail = event.get("detail")
        source = event.get("source")
        detail_type = event.get("detail-type")
        if isinstance(detail, dict) and isinstance(source, str):
            if source == "aws.guardduty" and detail_type == "GuardDuty Finding":
                return _from_guardduty(event, detail)
            if source == "aws.securityhub" and detail_type == "Security Hub Findings - Imported":
                return _from_securityhub(event, detail, Kind.SECURITYHUB)
            if (
                source == "aws.securityhub"
                and detail_type == "Security Hub Findings - Custom Action"
            ):
                return _from_securityhub(event, detail, Kind.SECURITYHUB_ACTION)
            if source == "aws.config" and detail_type == "Config Rules Compliance Change":
                return _from_config(event, detail)
            if source.startswith(report.SOURCE_PREFIX) and detail_type == report.DETAIL_TYPE:
                return _from_remediation(event, detail, source)
        if isinstance(detail_type, str) and detail_type.strip():
            return _from_event(event, detail)
        if isinstance(event.get("AlarmName"), str) and "NewStateValue" in event:
            return _from_alarm(event)
    return _from_json(event, subject)


def _remote_ip(details: Any) -> str:
    details = _dict(details)
    address = _first(60, details.get("ipAddressV4"), details.get("ipAddressV6"))
    if not address:
        return ""
    where = [
        _line(_dict(details.get("country")).get("countryName"), 60),
        _line(_dict(details.get("organization")).get("asnOrg"), 60),
    ]
    context = ", ".join(part for part in where if part)
    return f"{address} ({context})" if context else address


def _port(details: Any) -> str:
    details = _dict(details)
    port, name = _line(details.get("port"), 10), _line(details.get("portName"), 30)
    return f"{port} ({name})" if port and name and name != "Unknown" else port


def _guardduty_action(action: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [("Action", action.get("actionType"))]
    network = _dict(action.get("networkConnectionAction"))
    if network:
        pairs += [
            ("Direction", network.get("connectionDirection")),
            ("Remote IP", _remote_ip(network.get("remoteIpDetails"))),
            ("Remote port", _port(network.get("remotePortDetails"))),
            ("Local port", _port(network.get("localPortDetails"))),
            ("Protocol", network.get("protocol")),
        ]
    probes = [_dict(p) for p in _list(_dict(action.get("portProbeAction")).get("portProbeDetails"))]
    if probes:
        pairs += [
            ("Probing IPs", _joined(_remote_ip(p.get("remoteIpDetails")) for p in probes)),
            ("Probed ports", _joined(_port(p.get("localPortDetails")) for p in probes)),
        ]
    api_call = _dict(action.get("awsApiCallAction"))
    if api_call:
        api = _line(api_call.get("api"), 100)
        service = _line(api_call.get("serviceName"), 100)
        pairs += [
            ("API call", f"{service} {api}".strip()),
            ("Caller", api_call.get("callerType")),
            ("Remote IP", _remote_ip(api_call.get("remoteIpDetails"))),
        ]
    dns = _dict(action.get("dnsRequestAction"))
    if dns:
        pairs.append(("Domain", dns.get("domain")))
    rds = _dict(action.get("rdsLoginAttemptAction"))
    if rds:
        logins = [_dict(item) for item in _list(rds.get("LoginAttributes"))]
        pairs += [
            ("Remote IP", _remote_ip(rds.get("remoteIpDetails"))),
            (
                "Login attempts",
                _joined(
                    f"{_line(login.get('user'), 60)} via {_line(login.get('application'), 60)}: "
                    f"{_line(login.get('failedLoginAttempts'), 10) or 0} failed, "
                    f"{_line(login.get('successfulLoginAttempts'), 10) or 0} succeeded"
                    for login in logins
                ),
            ),
        ]
    kubernetes = _dict(action.get("kubernetesApiCallAction"))
    if kubernetes:
        verb = _line(kubernetes.get("verb"), 20)
        uri = _line(kubernetes.get("requestUri"), 200)
        pairs += [
            ("Kubernetes call", f"{verb} {uri}".strip()),
            ("Remote IP", _remote_ip(kubernetes.get("remoteIpDetails"))),
        ]
    return pairs


def _threat_lists(service: dict[str, Any]) -> str:
    """The threat lists (``threatListName``) a finding's address came from: GuardDuty puts
    the name in ``additionalInfo`` (itself, or JSON text in its ``value``) and in
    ``evidence.threatIntelligenceDetails``."""
    info = _dict(service.get("additionalInfo"))
    try:
        embedded = _dict(json.loads(info["value"])) if isinstance(info.get("value"), str) else {}
    except ValueError:
        embedded = {}
    evidence = _list(_dict(service.get("evidence")).get("threatIntelligenceDetails"))
    names = [info.get("threatListName"), embedded.get("threatListName")]
    names += [_dict(item).get("threatListName") for item in evidence]
    return _joined(_line(name, 100) for name in names)


def _from_guardduty(event: dict[str, Any], detail: dict[str, Any]) -> Notification:
    resource = _dict(detail.get("resource"))
    service = _dict(detail.get("service"))
    instance = _dict(resource.get("instanceDetails"))
    access_key = _dict(resource.get("accessKeyDetails"))
    buckets = [_dict(b).get("name") for b in _list(resource.get("s3BucketDetails"))]
    region = _first(30, detail.get("region"), event.get("region"))
    finding_id = _line(detail.get("id"), 200)
    finding_type = _line(detail.get("type"), 150)

    resources: list[Any] = [instance.get("instanceId"), *buckets]
    if access_key.get("accessKeyId") or access_key.get("userName"):
        user = _line(access_key.get("userName"), 100)
        key_id = _line(access_key.get("accessKeyId"), 100)
        resources.append(f"{user} ({key_id})" if user and key_id else user or key_id)
    if not any(resources):
        resources.append(resource.get("resourceType"))

    title = _first(TITLE_LIMIT, detail.get("title"), finding_type) or "GuardDuty finding"
    if _dict(service.get("additionalInfo")).get("sample") is True and "[SAMPLE]" not in title:
        title = _truncate(f"[SAMPLE] {title}", TITLE_LIMIT)
    return Notification(
        kind=Kind.GUARDDUTY,
        title=title,
        severity=guardduty_severity(detail.get("severity")),
        account=_first(40, detail.get("accountId"), event.get("account")),
        region=region,
        resources=_resources(resources),
        summary=_block(detail.get("description"), SUMMARY_LIMIT),
        details=_details(
            [
                ("Finding type", finding_type),
                ("Threat list", _threat_lists(service)),
                ("Resource type", resource.get("resourceType")),
                *_guardduty_action(_dict(service.get("action"))),
                ("Count", service.get("count")),
                ("Last seen", service.get("eventLastSeen")),
                ("Finding ID", finding_id),
            ]
        ),
        link=guardduty_link(region, finding_id),
    )


@dataclass(frozen=True, slots=True)
class _Finding:
    title: str
    severity: str
    account: str
    region: str
    resources: tuple[str, ...]
    finding_id: str
    raw: dict[str, Any]


def _asff(finding: dict[str, Any]) -> _Finding:
    resources = []
    for resource in _list(finding.get("Resources")):
        resource = _dict(resource)
        resource_id = _line(resource.get("Id"), 250)
        resource_type = _line(resource.get("Type"), 45)
        if resource_id:
            resources.append(f"{resource_id} ({resource_type})" if resource_type else resource_id)
    return _Finding(
        title=_line(finding.get("Title"), TITLE_LIMIT) or "Untitled finding",
        severity=securityhub_severity(finding.get("Severity")),
        account=_line(finding.get("AwsAccountId"), 40),
        region=_line(finding.get("Region"), 30),
        resources=_resources(resources),
        finding_id=_line(finding.get("Id"), 512),
        raw=finding,
    )


def _product(finding: dict[str, Any]) -> str:
    arn = _line(finding.get("ProductArn"), 200)
    return _first(60, finding.get("ProductName"), arn.partition(":product/")[2], arn)


def _from_securityhub(event: dict[str, Any], detail: dict[str, Any], kind: Kind) -> Notification:
    findings = [_asff(f) for f in _list(detail.get("findings")) if isinstance(f, dict)]
    findings.sort(key=lambda f: _SEVERITY_RANK[f.severity])
    # Events reach the topic in the region that emits them, which is also where the console
    # shows the finding (an aggregation region shows findings from linked regions).
    region = _line(event.get("region"), 30) or (findings[0].region if findings else "")
    action = _line(detail.get("actionName"), 100)
    action_details: list[tuple[str, Any]] = []
    if kind is Kind.SECURITYHUB_ACTION:
        action_details = [
            ("Custom action", action),
            ("Action description", detail.get("actionDescription")),
        ]

    if len(findings) == 1:
        finding = findings[0]
        raw = finding.raw
        recommendation = _dict(_dict(raw.get("Remediation")).get("Recommendation"))
        title = finding.title
        summary = _block(raw.get("Description"), SUMMARY_LIMIT)
        details = [
            *action_details,
            ("Product", _product(raw)),
            ("Type", next(iter(_list(raw.get("Types"))), None)),
            ("Compliance", _dict(raw.get("Compliance")).get("Status")),
            ("Control", _dict(raw.get("Compliance")).get("SecurityControlId")),
            ("Workflow", _dict(raw.get("Workflow")).get("Status")),
            ("Recommendation", recommendation.get("Url") or recommendation.get("Text")),
            ("Updated", raw.get("UpdatedAt")),
            ("Finding ID", finding.finding_id),
        ]
    else:
        title = f"{len(findings)} Security Hub findings"
        if kind is Kind.SECURITYHUB_ACTION:
            title = f"{action or 'Custom action'}: {title}"
        lines = []
        for finding in findings[:MAX_LISTED_FINDINGS]:
            where = f" - {finding.resources[0]}" if finding.resources else ""
            lines.append(
                _truncate(f"• [{finding.severity}] {finding.title}{where}", _FINDING_LINE_LIMIT)
            )
        if len(findings) > MAX_LISTED_FINDINGS:
            lines.append(f"and {len(findings) - MAX_LISTED_FINDINGS} more")
        summary = "\n".join(lines) or "The event carried no findings."
        details = [*action_details, ("Products", _joined(_product(f.raw) for f in findings))]

    return Notification(
        kind=kind,
        title=_truncate(title, TITLE_LIMIT),
        severity=findings[0].severity if findings else "UNKNOWN",
        account=_joined(f.account for f in findings) or _line(event.get("account"), 40),
        region=region,
        resources=_resources(r for f in findings for r in f.resources),
        summary=_truncate(summary, SUMMARY_LIMIT),
        details=_details(details),
        link=securityhub_link(region, findings[0].finding_id) if findings else None,
    )


def _config_severity(compliance: str) -> str:
    # Config results carry no severity; a resource turning non-compliant needs a look,
    # a resource returning to compliance is good news.
    return {
        "NON_COMPLIANT": "MEDIUM",
        "COMPLIANT": "INFORMATIONAL",
        "NOT_APPLICABLE": "LOW",
        "INSUFFICIENT_DATA": "LOW",
    }.get(compliance, "UNKNOWN")


def _from_config(event: dict[str, Any], detail: dict[str, Any]) -> Notification:
    new = _dict(detail.get("newEvaluationResult"))
    old = _dict(detail.get("oldEvaluationResult"))
    qualifier = _dict(_dict(new.get("evaluationResultIdentifier")).get("evaluationResultQualifier"))
    rule = _first(128, detail.get("configRuleName"), qualifier.get("configRuleName"))
    resource_id = _first(250, detail.get("resourceId"), qualifier.get("resourceId"))
    resource_type = _first(100, detail.get("resourceType"), qualifier.get("resourceType"))
    region = _first(30, detail.get("awsRegion"), event.get("region"))
    compliance = _line(new.get("complianceType"), 30) or "UNKNOWN"
    previous = _line(old.get("complianceType"), 30)

    change = f"from {previous} to {compliance}" if previous else f"to {compliance}"
    summary = (
        f"AWS Config rule {rule or '(unnamed)'} changed {resource_type} {resource_id} {change}."
    )
    annotation = _block(new.get("annotation"), SUMMARY_LIMIT)
    return Notification(
        kind=Kind.CONFIG,
        title=_truncate(
            f"{resource_id or 'A resource'} is {compliance} with {rule or 'a Config rule'}",
            TITLE_LIMIT,
        ),
        severity=_config_severity(compliance),
        account=_first(40, detail.get("awsAccountId"), event.get("account")),
        region=region,
        resources=_resources(
            [f"{resource_id} ({resource_type})" if resource_type else resource_id]
        ),
        summary=_truncate(f"{summary}\n{annotation}" if annotation else summary, SUMMARY_LIMIT),
        details=_details(
            [
                ("Rule", rule),
                ("Compliance", compliance),
                ("Previously", previous),
                ("Resource type", resource_type),
                ("Evaluation mode", qualifier.get("evaluationMode")),
                ("Recorded", new.get("resultRecordedTime")),
            ]
        ),
        link=config_link(region, resource_id, resource_type),
    )


def _from_remediation(event: dict[str, Any], detail: dict[str, Any], source: str) -> Notification:
    actions = [_line(a, DETAIL_VALUE_LIMIT) for a in _list(detail.get("actions"))]
    taken = "\n".join(f"- {a}" for a in actions if a)
    summary = _block(detail.get("summary"), SUMMARY_LIMIT)
    return Notification(
        kind=Kind.REMEDIATION,
        title=_line(detail.get("title"), TITLE_LIMIT) or "Playbook remediation",
        severity=_label_severity(detail.get("severity")),
        account=_line(event.get("account"), 40),
        region=_line(event.get("region"), 30),
        resources=_resources(_list(event.get("resources"))),
        summary=_truncate(
            f"{summary}\n\nActions taken:\n{taken}" if taken else summary, SUMMARY_LIMIT
        ),
        details=_details(
            [
                ("Remediator", source.removeprefix(report.SOURCE_PREFIX)),
                ("Finding ID", detail.get("findingId")),
                ("Time", event.get("time")),
            ]
        ),
        link=None,
    )


_ALARM_SEVERITIES = {"ALARM": "HIGH", "OK": "INFORMATIONAL", "INSUFFICIENT_DATA": "LOW"}


def _from_alarm(alarm: dict[str, Any]) -> Notification:
    """A CloudWatch alarm state change as SNS delivers it (the playbooks alarm on their
    remediators' errors and dead-letter queues). See
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html."""
    state = _line(alarm.get("NewStateValue"), 30)
    name = _line(alarm.get("AlarmName"), 150)
    trigger = _dict(alarm.get("Trigger"))
    dimensions = ", ".join(
        f"{_line(_dict(d).get('name'), 40)}={_line(_dict(d).get('value'), 120)}"
        for d in _list(trigger.get("Dimensions"))
    )
    region = _line(alarm.get("AlarmArn"), 300).split(":")[3] if alarm.get("AlarmArn") else ""
    return Notification(
        kind=Kind.ALARM,
        title=_truncate(f"{state}: {name}", TITLE_LIMIT),
        severity=_ALARM_SEVERITIES.get(state, "UNKNOWN"),
        account=_line(alarm.get("AWSAccountId"), 40),
        region=region,
        resources=_resources([dimensions]),
        summary=_block(
            "\n\n".join(
                part
                for part in (
                    _line(alarm.get("AlarmDescription"), 600),
                    _line(alarm.get("NewStateReason"), 800),
                )
                if part
            ),
            SUMMARY_LIMIT,
        ),
        details=_details(
            [
                ("Previous state", alarm.get("OldStateValue")),
                (
                    "Metric",
                    f"{_line(trigger.get('Namespace'), 60)} {_line(trigger.get('MetricName'), 80)}",
                ),
                ("Changed at", alarm.get("StateChangeTime")),
            ]
        ),
        link=_console(region, f"cloudwatch/home?region={region}#alarmsV2:alarm/{_quote(name)}")
        if region and name
        else None,
    )


def _from_event(event: dict[str, Any], detail: Any) -> Notification:
    return Notification(
        kind=Kind.EVENT,
        title=_line(event.get("detail-type"), TITLE_LIMIT) or "EventBridge event",
        severity="UNKNOWN",
        account=_line(event.get("account"), 40),
        region=_line(event.get("region"), 30),
        resources=_resources(_list(event.get("resources"))),
        summary=_json_excerpt(detail if detail is not None else event),
        details=_details(
            [
                ("Event source", event.get("source")),
                ("Detail type", event.get("detail-type")),
                ("Time", event.get("time")),
                ("Event ID", event.get("id")),
            ]
        ),
        link=None,
    )


def _from_json(value: Any, subject: str | None) -> Notification:
    return Notification(
        kind=Kind.JSON,
        title=_line(subject, TITLE_LIMIT) or "JSON message",
        severity="UNKNOWN",
        account="",
        region="",
        resources=(),
        summary=_json_excerpt(value),
        details=(),
        link=None,
    )


def _from_text(text: str, subject: str | None) -> Notification:
    body = _block(text, SUMMARY_LIMIT)
    first_line = body.split("\n", 1)[0]
    return Notification(
        kind=Kind.TEXT,
        title=_line(subject, TITLE_LIMIT)
        or _truncate(first_line, TITLE_LIMIT)
        or "(empty message)",
        severity="UNKNOWN",
        account="",
        region="",
        resources=(),
        summary=body,
        details=(),
        link=None,
    )


# --------------------------------------------------------------------------- formatting

_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _slack(text: str, limit: int) -> str:
    """Escape Slack's control characters (& < >) and cut without splitting an entity."""
    escaped = "".join(_SLACK_ESCAPES.get(char, char) for char in text)
    if _units(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    used = 0
    for char in text:
        piece = _SLACK_ESCAPES.get(char, char)
        used += _units(piece)
        if used > limit - 1:
            break
        pieces.append(piece)
    return "".join(pieces) + "…"


def _shown(value: str) -> str:
    return value or "-"


def slack_payload(n: Notification) -> dict[str, Any]:
    """Incoming-webhook message with Block Kit blocks and a plain ``text`` fallback."""
    resources = "\n".join(n.resources)
    fields = [
        ("Severity", n.severity),
        ("Source", n.source),
        ("Account", n.account),
        ("Region", n.region),
        ("Resources" if len(n.resources) > 1 else "Resource", resources),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _slack(n.title, SLACK_HEADER_LIMIT)},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _slack(f"*{name}*\n{_shown(value)}", SLACK_FIELD_LIMIT)}
                for name, value in fields
            ],
        },
    ]
    if n.summary:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack(n.summary, SLACK_TEXT_LIMIT)},
            }
        )
    if n.details:
        lines = "\n".join(f"*{key}:* {value}" for key, value in n.details)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack(lines, SLACK_TEXT_LIMIT)}}
        )
    if n.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in AWS console"},
                        "url": n.link,
                    }
                ],
            }
        )
    return {
        "text": _slack(f"[{n.severity}] {n.source}: {n.title}", SLACK_TEXT_LIMIT),
        "blocks": blocks,
    }


_TEAMS_COLORS = {"CRITICAL": "Attention", "HIGH": "Attention", "MEDIUM": "Warning", "LOW": "Accent"}
# Adaptive Card TextBlocks and Fact values render a Markdown subset, so finding text such
# as "[Sign in](https://attacker.example)" would become a disguised link. Every Markdown
# control character is backslash-escaped (CommonMark), list markers at a line start too.
_TEAMS_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#|!~])")
_TEAMS_LIST_MARKER = re.compile(r"^(\s*\d*)([-+.)])(?=\s)", re.MULTILINE)


def _teams(text: str) -> str:
    escaped = _TEAMS_MARKDOWN.sub(r"\\\1", text)
    return _TEAMS_LIST_MARKER.sub(r"\1\\\2", escaped)


def teams_payload(n: Notification) -> dict[str, Any]:
    """An Adaptive Card 1.4 message, the shape a Teams Workflows webhook flow accepts."""
    facts = [
        {"title": "Account", "value": _teams(_shown(n.account))},
        {"title": "Region", "value": _teams(_shown(n.region))},
        {
            "title": "Resources" if len(n.resources) > 1 else "Resource",
            "value": _teams(_shown(", ".join(n.resources))),
        },
        *({"title": _teams(key), "value": _teams(value)} for key, value in n.details),
    ]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _teams(n.title),
            "weight": "Bolder",
            "size": "Large",
            "wrap": True,
        },
        {
            "type": "TextBlock",
            "text": f"{n.severity} · {n.source}",
            "color": _TEAMS_COLORS.get(n.severity, "Default"),
            "weight": "Bolder",
            "spacing": "None",
            "wrap": True,
        },
    ]
    if n.summary:
        body.append({"type": "TextBlock", "text": _teams(n.summary), "wrap": True})
    body.append({"type": "FactSet", "facts": facts})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if n.link:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in AWS console", "url": n.link}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


# Chime notifies the whole room for @All / @Present; a zero-width space defuses them.
_CHIME_MENTION = re.compile(r"@(?=(all|present)\b)", re.IGNORECASE)


def chime_payload(n: Notification) -> dict[str, str]:
    lines = [
        f"[{n.severity}] {n.source}: {n.title}",
        f"Account: {_shown(n.account)} | Region: {_shown(n.region)}",
    ]
    lines += [f"Resource: {r}" for r in n.resources]
    if n.summary:
        lines += ["", n.summary]
    if n.details:
        lines += ["", *(f"{key}: {value}" for key, value in n.details)]
    text = _CHIME_MENTION.sub("@\u200b", "\n".join(lines))
    if not n.link:
        return {"Content": _truncate(text, CHIME_CONTENT_LIMIT)}
    tail = f"\n\n{n.link}"
    return {"Content": _truncate(text, CHIME_CONTENT_LIMIT - _units(tail)) + tail}


def email_subject(n: Notification) -> str:
    """An SNS e-mail subject: ASCII, no line breaks or control characters, under 100 chars."""
    return report.sns_subject(f"[{n.severity}] {n.source}: {n.title}")


def email_body(n: Notification) -> str:
    rows = [
        ("Severity", n.severity),
        ("Source", n.source),
        ("Account", _shown(n.account)),
        ("Region", _shown(n.region)),
    ]
    width = max(len(name) for name, _ in [*rows, ("Resource", "")])
    lines = [n.title, "=" * min(_units(n.title), 72), ""]
    lines += [f"{name + ':':<{width + 1}} {value}" for name, value in rows]
    for index, resource in enumerate(n.resources or ("-",)):
        label = "Resource:" if index == 0 else ""
        lines.append(f"{label:<{width + 1}} {resource}")
    if n.summary:
        lines += ["", "What happened", "-------------", n.summary]
    if n.details:
        lines += ["", "Details", "-------", *(f"{key}: {value}" for key, value in n.details)]
    if n.link:
        lines += ["", f"Open in the AWS console: {n.link}"]
    lines += ["", "-- ", "Sent by the playbook notifier."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- delivery


class DeliveryError(Exception):
    """Every configured channel failed: raised so Lambda retries and then uses the DLQ."""


class WebhookConfigError(Exception):
    """The webhook secret is missing, unreadable or malformed."""


class WebhookError(Exception):
    """One webhook refused the message or stayed unreachable after the retries."""


@dataclass(frozen=True, slots=True)
class Settings:
    webhook_secret_name: str
    email_topic_arn: str
    allow_http_loopback: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            webhook_secret_name=env.get("WEBHOOK_SECRET_NAME", "").strip(),
            email_topic_arn=env.get("EMAIL_TOPIC_ARN", "").strip(),
            allow_http_loopback=env.get("NOTIFIER_ALLOW_HTTP_LOOPBACK", "") == "1",
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    email_message_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": list(self.delivered),
            "failed": dict(self.failed),
            "emailMessageId": self.email_message_id,
        }


PAYLOADS: Mapping[str, Callable[[Notification], Mapping[str, Any]]] = {
    "slack": slack_payload,
    "teams": teams_payload,
    "chime": chime_payload,
}

_webhook_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def reset_webhook_cache() -> None:
    """Forget cached webhook URLs (tests, or to pick up a rotated secret immediately)."""
    _webhook_cache.clear()


def load_webhooks(secret_name: str, *, now: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """The channel -> URL map from the secret, cached per warm container for a short time.

    Unknown keys are logged and ignored; a blank value leaves that channel off. Values are
    returned unchecked: a bad URL fails its own channel, not the others.
    """
    cached = _webhook_cache.get(secret_name)
    if cached is not None and now() - cached[0] < WEBHOOK_CACHE_SECONDS:
        return cached[1]
    try:
        response = aws.client("secretsmanager").get_secret_value(SecretId=secret_name)
    except ClientError as error:
        code = aws.error_code(error) or "Unknown"
        if code == "ResourceNotFoundException":
            raise WebhookConfigError(
                f"webhook secret {secret_name!r} does not exist in Secrets Manager"
            ) from error
        raise WebhookConfigError(f"cannot read webhook secret {secret_name!r}: {code}") from error
    except BotoCoreError as error:
        raise WebhookConfigError(f"cannot read webhook secret {secret_name!r}: {error}") from error
    try:
        document = json.loads(response.get("SecretString") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise WebhookConfigError(
            f"webhook secret {secret_name!r} must be a JSON object such as "
            '{"slack": "https://...", "teams": "https://...", "chime": "https://..."}'
        )
    webhooks: dict[str, Any] = {}
    for channel, url in document.items():
        if channel not in PAYLOADS and channel != "workflow":  # workflow: routing.py
            logger.warning(
                "ignoring unknown key in webhook secret", extra={"key": _line(channel, 40)}
            )
        elif url not in ("", None):
            webhooks[channel] = url
    _webhook_cache[secret_name] = (now(), webhooks)
    return webhooks


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_webhook_url(channel: str, url: Any, *, allow_http_loopback: bool) -> str:
    """``url`` if it is https; plain http only to loopback and only when tests allow it."""
    if isinstance(url, str):
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None and parts.hostname:
            if parts.scheme == "https":
                return url
            if parts.scheme == "http" and allow_http_loopback and parts.hostname in _LOOPBACK_HOSTS:
                return url
    raise ValueError(f"{channel} webhook must be an https:// URL")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is misconfigured, and following it could send the
    # notification (and any token in it) somewhere else or downgrade to http.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; an HTTP-date or junk falls back to the backoff."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _backoff(attempt: int, retry_after: float | None) -> float:
    delay = retry_after if retry_after is not None else _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
    delay = min(delay, _BACKOFF_CAP_SECONDS)
    # Jitter spreads the retries of many concurrent invocations hitting one webhook.
    return delay / 2 + random.uniform(0, delay / 2)


def post_json(url: str, payload: Mapping[str, Any], *, sleep: Callable[[float], None]) -> int:
    """POST ``payload``, retrying 429, 5xx and connection errors; returns the attempts used.

    Raises :class:`WebhookError` on any other answer or once the attempts are spent.
    """
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "playbook-notifier",
        },
    )
    attempt = 0
    while True:
        attempt += 1
        retry_after = None
        try:
            with _opener.open(request, timeout=HTTP_TIMEOUT_SECONDS):
                return attempt
        except urllib.error.HTTPError as error:
            with error:
                answer = _line(error.read(200).decode("utf-8", "replace"), 100)
                retry_after = _retry_after(error.headers.get("Retry-After"))
            problem = f"HTTP {error.code}" + (f": {answer}" if answer else "")
            if error.code != 429 and error.code < 500:
                raise WebhookError(problem) from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            # Only the exception type: some messages quote the URL, and the URL is a credential.
            cause = error.reason if isinstance(error, urllib.error.URLError) else error
            name = type(cause).__name__ if isinstance(cause, BaseException) else "URLError"
            problem = f"connection failed: {name}"
        if attempt >= MAX_ATTEMPTS:
            raise WebhookError(f"{problem} after {attempt} attempts")
        sleep(_backoff(attempt, retry_after))


def publish_email(n: Notification, topic_arn: str) -> str:
    response = aws.client("sns").publish(
        TopicArn=topic_arn, Subject=email_subject(n), Message=email_body(n)
    )
    return str(response["MessageId"])


def _send_chat(
    n: Notification,
    webhooks: Mapping[str, Any],
    settings: Settings,
    sleep: Callable[[float], None],
) -> dict[str, str | None]:
    """Channel -> None when delivered, else the reason it failed. Channels run in parallel."""

    def send(channel: str) -> str | None:
        try:
            url = check_webhook_url(
                channel, webhooks[channel], allow_http_loopback=settings.allow_http_loopback
            )
        except ValueError as error:
            return str(error)
        try:
            attempts = post_json(url, PAYLOADS[channel](n), sleep=sleep)
        except WebhookError as error:
            return str(error)
        logger.info("delivered", extra={"channel": channel, "attempts": attempts})
        return None

    channels = [c for c in PAYLOADS if c in webhooks]
    if not channels:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(channels)) as pool:
        return dict(zip(channels, pool.map(send, channels), strict=True))


def deliver(
    n: Notification, settings: Settings, *, sleep: Callable[[float], None] = time.sleep
) -> Delivery:
    """Send ``n`` to every configured channel; one failing channel never stops the others.

    Raises :class:`DeliveryError` when channels are configured and all of them failed.
    """
    outcomes: dict[str, str | None] = {}
    if settings.webhook_secret_name:
        try:
            webhooks = load_webhooks(settings.webhook_secret_name)
        except WebhookConfigError as error:
            outcomes["webhooks"] = str(error)
        else:
            if not webhooks:
                logger.warning("webhook secret configures no chat channel")
            outcomes.update(_send_chat(n, webhooks, settings, sleep))
    email_message_id = None
    if settings.email_topic_arn:
        try:
            email_message_id = publish_email(n, settings.email_topic_arn)
        except ClientError as error:
            outcomes["email"] = (
                f"SNS publish failed: {error.response.get('Error', {}).get('Code', 'Unknown')}"
            )
        except BotoCoreError as error:
            outcomes["email"] = f"SNS publish failed: {error}"
        else:
            outcomes["email"] = None
    result = Delivery(
        delivered=tuple(channel for channel, problem in outcomes.items() if problem is None),
        failed=tuple(
            (channel, problem) for channel, problem in outcomes.items() if problem is not None
        ),
        email_message_id=email_message_id,
    )
    if not outcomes:
        logger.warning("no channel configured: set WEBHOOK_SECRET_NAME and/or EMAIL_TOPIC_ARN")
    if result.failed:
        logger.error(
            "delivery failed", extra={"failed": dict(result.failed), "delivered": result.delivered}
        )
        if not result.delivered:
            raise DeliveryError(
                "every configured channel failed: "
                + "; ".join(f"{channel}: {problem}" for channel, problem in result.failed)
            )
    return result
