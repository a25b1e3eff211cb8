"""The threat feed updater: fetch each feed, normalise it, write the list object when its
content changed, and tell GuardDuty to reload it.

Per feed (and the manual list), in order:

1. Conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the feed's state
   object). 304: nothing to do.
2. Parse (``parsers``), judge with the blockers' address rules, deduplicate and collapse
   (``entries``), apply GuardDuty's caps with the module's policy.
3. A failing, garbage or empty feed, or one refused by the cap, keeps the last good list:
   nothing is written and GuardDuty is not called; the report says why.
4. The list object is written only when the sha256 of its content differs from the one
   last activated; then ``UpdateThreatIntelSet`` (``Activate=True``) makes GuardDuty
   reload it, and only then is the state object updated. A run that fails between the
   two writes the list again next time and retries the call (both are idempotent).

One report per run goes to the notifications topic (INFO when every feed is fine,
MEDIUM when any feed kept its last good list).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from functions.common import aws, report
from functions.common.addresses import IPNetwork, parse_allowlist
from functions.threat_feed import entries, parsers
from functions.threat_feed.fetch import FetchError, fetch

FUNCTION_NAME = "threat_feed"
MANUAL_LIST = "manual"
LIST_PREFIX = "lists/"
STATE_PREFIX = "state/"

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


class ConfigError(ValueError):
    """The function's environment is wrong (a deployment problem, not a feed problem)."""


@dataclass(frozen=True)
class Feed:
    name: str
    url: str
    format: str
    column: str = ""
    auth_secret: str = ""


@dataclass(frozen=True)
class ThreatList:
    """A GuardDuty threat intel set the updater keeps: its id and S3 location."""

    set_id: str
    location: str


@dataclass(frozen=True)
class Config:
    bucket: str
    kms_key_arn: str
    detector_id: str
    feeds: tuple[Feed, ...]
    manual_entries: tuple[str, ...]
    lists: Mapping[str, ThreatList]
    allowlist: tuple[IPNetwork, ...]
    cap_policy: str
    max_entries: int = entries.THREAT_LIST_MAX_ENTRIES
    max_bytes: int = entries.THREAT_LIST_MAX_BYTES
    max_feed_bytes: int = 100 * 1024 * 1024
    fetch_timeout_seconds: float = 60.0
    notify_topic_arn: str = ""
    allow_http_loopback: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"environment variable {name} is not set")
            return value

        def decoded(name: str, default: str) -> Any:
            try:
                return json.loads(env.get(name, default) or default)
            except ValueError as exc:
                raise ConfigError(f"{name} is not valid JSON: {exc}") from None

        raw_feeds = decoded("FEEDS", "[]")
        raw_lists = decoded("THREAT_LISTS", "{}")
        manual = decoded("MANUAL_ENTRIES", "[]")
        if not isinstance(raw_feeds, list) or not all(isinstance(f, dict) for f in raw_feeds):
            raise ConfigError("FEEDS must be a JSON list of objects")
        if not isinstance(raw_lists, dict):
            raise ConfigError("THREAT_LISTS must be a JSON object of name -> {id, location}")
        if not isinstance(manual, list) or not all(isinstance(m, str) for m in manual):
            raise ConfigError("MANUAL_ENTRIES must be a JSON list of strings")
        feeds: list[Feed] = []
        for index, item in enumerate(raw_feeds):
            try:
                feed = Feed(
                    name=str(item["name"]),
                    url=str(item["url"]),
                    format=str(item["format"]),
                    column=str(item.get("column", "")),
                    auth_secret=str(item.get("auth_secret", "")),
                )
            except KeyError as exc:
                raise ConfigError(f"FEEDS[{index}] has no {exc.args[0]}") from None
            if feed.format not in parsers.FORMATS:
                raise ConfigError(
                    f"FEEDS[{index}].format {feed.format!r} is not one of {parsers.FORMATS}"
                )
            feeds.append(feed)
        lists: dict[str, ThreatList] = {}
        for name, value in raw_lists.items():
            if not isinstance(value, dict) or not value.get("id") or not value.get("location"):
                raise ConfigError(f"THREAT_LISTS[{name!r}] needs id and location")
            lists[name] = ThreatList(str(value["id"]), str(value["location"]))
        missing = [f.name for f in feeds if f.name not in lists]
        if manual and MANUAL_LIST not in lists:
            missing.append(MANUAL_LIST)
        if missing:
            raise ConfigError(f"THREAT_LISTS has no threat intel set for {missing}")
        cap_policy = env.get("CAP_POLICY", "refuse")
        if cap_policy not in entries.CAP_POLICIES:
            raise ConfigError(f"CAP_POLICY must be one of {entries.CAP_POLICIES}")
        try:
            allowlist = parse_allowlist(env.get("ALLOWLIST_CIDRS", ""))
        except ValueError as exc:
            raise ConfigError(f"ALLOWLIST_CIDRS: {exc}") from None
        try:
            max_entries = int(env.get("MAX_ENTRIES", entries.THREAT_LIST_MAX_ENTRIES))
            max_feed_bytes = int(env.get("MAX_FEED_BYTES", 100 * 1024 * 1024))
            timeout = float(env.get("FETCH_TIMEOUT_SECONDS", 60))
        except ValueError as exc:
            raise ConfigError(f"a numeric setting is not a number: {exc}") from None
        if not 1 <= max_entries <= entries.THREAT_LIST_MAX_ENTRIES:
            raise ConfigError(f"MAX_ENTRIES must be 1-{entries.THREAT_LIST_MAX_ENTRIES}")
        return cls(
            bucket=required("LIST_BUCKET"),
            kms_key_arn=required("LIST_KMS_KEY_ARN"),
            detector_id=required("DETECTOR_ID"),
            feeds=tuple(feeds),
            manual_entries=tuple(manual),
            lists=lists,
            allowlist=allowlist,
            cap_policy=cap_policy,
            max_entries=max_entries,
            max_feed_bytes=max_feed_bytes,
            fetch_timeout_seconds=timeout,
            notify_topic_arn=env.get("NOTIFY_TOPIC_ARN", "").strip(),
            allow_http_loopback=env.get("THREAT_FEED_ALLOW_HTTP_LOOPBACK", "") == "1",
        )


@dataclass
class ListResult:
    """What happened to one list in this run."""

    name: str
    outcome: str  # updated | unchanged | kept (last good list kept) | not-modified
    entries: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    note: str = ""

    @property
    def kept_last_good(self) -> bool:
        return self.outcome == "kept"

    def line(self) -> str:
        parts = [f"{self.name}: {self.outcome}"]
        if self.outcome in ("updated", "unchanged"):
            parts.append(f"{self.entries} entries")
        if self.counts:
            listed = ", ".join(f"{reason} {count}" for reason, count in sorted(self.counts.items()))
            parts.append(f"left out: {listed}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "entries": self.entries,
            "counts": dict(sorted(self.counts.items())),
            "note": self.note,
        }


class _KeepLastGood(Exception):
    """This feed's new content must not replace the last good list."""


def _state(config: Config, name: str) -> dict[str, Any]:
    try:
        response = aws.client("s3").get_object(
            Bucket=config.bucket, Key=f"{STATE_PREFIX}{name}.json"
        )
    except ClientError as error:
        if aws.error_code(error) in ("NoSuchKey", "404"):
            return {}
        raise
    try:
        state = json.loads(response["Body"].read())
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _put(
    config: Config, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]
) -> None:
    aws.client("s3").put_object(
        Bucket=config.bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=config.kms_key_arn,
        Metadata=dict(metadata),
    )


def _auth_headers(secret_name: str) -> dict[str, str]:
    """The feed's auth header from its secret: ``{"header": ..., "value": ...}`` or a plain
    string sent as ``Authorization``."""
    if not secret_name:
        return {}
    try:
        secret = aws.client("secretsmanager").get_secret_value(SecretId=secret_name)
    except ClientError as error:
        raise _KeepLastGood(
            f"cannot read auth secret {secret_name!r}: {aws.error_code(error)}"
        ) from None
    text = secret.get("SecretString") or ""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        header, value = document.get("header"), document.get("value")
        if not isinstance(header, str) or not isinstance(value, str) or not header or not value:
            raise _KeepLastGood(
                f'auth secret {secret_name!r} must be {{"header": ..., "value": ...}}'
            )
        return {header: value}
    if not text.strip():
        raise _KeepLastGood(f"auth secret {secret_name!r} is empty")
    return {"Authorization": text.strip()}


def _activate(config: Config, threat_list: ThreatList) -> None:
    aws.client("guardduty").update_threat_intel_set(
        DetectorId=config.detector_id,
        ThreatIntelSetId=threat_list.set_id,
        Location=threat_list.location,
        Activate=True,
    )


def _publish_list(
    config: Config,
    name: str,
    normalised: entries.Normalised,
    state: Mapping[str, Any],
    validators: Mapping[str, str],
) -> ListResult:
    """Caps, then write and activate when the content changed."""
    result = ListResult(name, "kept", counts=normalised.counts)
    if not normalised.entries:
        result.note = (
            "no valid entries: the last good list is kept (an empty list is never uploaded)"
        )
        return result
    capped = entries.apply_caps(normalised, config.max_entries, config.max_bytes, config.cap_policy)
    if capped.refused:
        result.note = capped.note
        return result
    body = "".join(f"{entry}\n" for entry in capped.entries).encode()
    digest = hashlib.sha256(body).hexdigest()
    result.entries = len(capped.entries)
    result.note = capped.note
    if state.get("sha256") == digest:
        result.outcome = "unchanged"
        if any(state.get(k, "") != v for k, v in validators.items()):
            _save_state(config, name, {**state, **validators})
        return result
    _put(config, f"{LIST_PREFIX}{name}.txt", body, "text/plain", {"sha256": digest})
    _activate(config, config.lists[name])
    _save_state(config, name, {**validators, "sha256": digest, "entries": len(capped.entries)})
    result.outcome = "updated"
    return result


def _save_state(config: Config, name: str, state: Mapping[str, Any]) -> None:
    body = json.dumps(dict(state), sort_keys=True).encode()
    _put(config, f"{STATE_PREFIX}{name}.json", body, "application/json", {})


def update_feed(config: Config, feed: Feed, now: datetime) -> ListResult:
    state = _state(config, feed.name)
    try:
        headers = _auth_headers(feed.auth_secret)
        try:
            fetched = fetch(
                feed.url,
                validators={k: str(state[k]) for k in ("etag", "lastModified") if state.get(k)},
                headers=headers,
                max_bytes=config.max_feed_bytes,
                timeout_seconds=config.fetch_timeout_seconds,
                allow_http_loopback=config.allow_http_loopback,
            )
        except FetchError as error:
            raise _KeepLastGood(str(error)) from None
        if fetched.status == 304:
            return ListResult(feed.name, "not-modified", entries=int(state.get("entries", 0)))
        try:
            text = fetched.body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _KeepLastGood("feed is not UTF-8 text") from None
        try:
            parsed = parsers.parser_for(feed.format, feed.column)(text, now)
        except parsers.FeedFormatError as error:
            raise _KeepLastGood(f"feed is not {feed.format}: {error}") from None
    except _KeepLastGood as kept:
        return ListResult(feed.name, "kept", note=f"{kept}; the last good list is kept")
    normalised = entries.normalise_entries(parsed.candidates, config.allowlist, parsed.rejected)
    validators = {"etag": fetched.etag, "lastModified": fetched.last_modified}
    return _publish_list(config, feed.name, normalised, state, validators)


def update_manual(config: Config) -> ListResult:
    normalised = entries.normalise_entries(config.manual_entries, config.allowlist)
    return _publish_list(config, MANUAL_LIST, normalised, _state(config, MANUAL_LIST), {})


def run(config: Config, names: Sequence[str] | None, now: Now = system_now) -> dict[str, Any]:
    """Update the named feeds (every feed and the manual list when ``names`` is None)."""
    known = {feed.name: feed for feed in config.feeds}
    unknown = [n for n in names or () if n not in known and n != MANUAL_LIST]
    if unknown:
        raise ConfigError(f"unknown feeds {unknown}; configured: {sorted(known)}")
    selected = (
        list(known) + ([MANUAL_LIST] if config.manual_entries else [])
        if names is None
        else list(names)
    )
    moment = now()
    results: list[ListResult] = []
    for name in selected:
        if name == MANUAL_LIST:
            if config.manual_entries:
                results.append(update_manual(config))
            continue
        results.append(update_feed(config, known[name], moment))
    summary = _report(config, results, moment)
    return {"status": "done", "lists": [r.as_dict() for r in results], "report": summary}


def _report(
    config: Config, results: Sequence[ListResult], moment: datetime
) -> dict[str, Any] | None:
    if not report.wanted(config.notify_topic_arn) or not results:
        return None
    kept = [r for r in results if r.kept_last_good]
    updated = [r for r in results if r.outcome == "updated"]
    title = f"Threat lists: {len(updated)} updated, {len(kept)} kept their last good list"
    totals: Counter[str] = Counter()
    for result in results:
        totals.update(result.counts)
    summary = (
        f"{len(results)} lists checked for GuardDuty detector {config.detector_id} "
        f"(cap policy: {config.cap_policy})."
    )
    if totals:
        summary += (
            " Left out: "
            + ", ".join(f"{reason} {count}" for reason, count in sorted(totals.items()))
            + "."
        )
    message = report.remediation_report(
        function=FUNCTION_NAME,
        title=title,
        severity="MEDIUM" if kept else "INFO",
        summary=summary,
        actions=[r.line() for r in results],
        account=_account(config),
        region=os.environ.get("AWS_REGION", ""),
        resources=[config.lists[r.name].location for r in results if r.name in config.lists],
        now=moment,
    )
    report.publish(config.notify_topic_arn, message)
    return message


def _account(config: Config) -> str:
    # The set location does not carry the account; the key ARN does.
    parts = config.kms_key_arn.split(":")
    return parts[4] if len(parts) > 4 else ""
