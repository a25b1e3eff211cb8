"""Feed formats: each parser turns a feed's text into candidate entries, in feed order.

A parser only finds the entries; it does not judge them (``entries.normalise`` does, with
the blockers' address rules). What a parser cannot read as an entry at all is counted by
reason; a feed whose structure is wrong (not JSON, no such CSV column) raises
:class:`FeedFormatError`, which keeps the last good list.

Formats:

- ``plain``: one address or CIDR per line; ``#`` starts a comment; blank lines are skipped;
  the first whitespace-separated token of a line is the entry.
- ``drop``: Spamhaus DROP/EDROP: ``;`` starts a comment, a line is ``CIDR ; SBL id``.
- ``csv``: a header row and a named column (``column``); other columns are ignored.
- ``stix``: a STIX 2.1 bundle; indicators whose pattern compares ``ipv4-addr:value`` or
  ``ipv6-addr:value`` (``=`` or ``ISSUBSET``); revoked indicators and those whose
  ``valid_until`` has passed (or whose ``valid_from`` is still ahead) are left out and
  counted. Indicators of other kinds (domains, URLs, hashes) are counted, not listed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FORMATS = ("plain", "drop", "csv", "stix")

MALFORMED_LINE = "malformed line"
MISSING_VALUE = "missing value in CSV column"
STIX_REVOKED = "revoked STIX indicator"
STIX_EXPIRED = "expired STIX indicator (valid_until passed)"
STIX_NOT_YET_VALID = "STIX indicator not yet valid (valid_from ahead)"
STIX_NOT_ADDRESS = "STIX indicator without an address pattern"
STIX_UNSUPPORTED = "STIX indicator whose pattern_type is not stix"


class FeedFormatError(ValueError):
    """The feed is not in its declared format at all (garbage)."""


@dataclass
class Parsed:
    candidates: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def parse_plain(text: str) -> Parsed:
    parsed = Parsed()
    append = parsed.candidates.append
    for line in text.splitlines():
        body = line.partition("#")[0]
        tokens = body.split(None, 1)
        if tokens:
            append(tokens[0])
    return parsed


def parse_drop(text: str) -> Parsed:
    parsed = Parsed()
    append = parsed.candidates.append
    for line in text.splitlines():
        body = line.partition(";")[0]
        tokens = body.split()
        if not tokens:
            continue
        if len(tokens) == 1:
            append(tokens[0])
        else:
            parsed.rejected[MALFORMED_LINE] += 1
    return parsed


def parse_csv(text: str, column: str) -> Parsed:
    if not column:
        raise FeedFormatError("a csv feed needs a column name")
    parsed = Parsed()
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [name.strip().lstrip("\ufeff") for name in row]
            if column not in header:
                raise FeedFormatError(
                    f"no column {column!r} in the CSV header; columns are {header[:20]}"
                )
            index = header.index(column)
            continue
        value = row[index].strip() if index < len(row) else ""
        if value:
            parsed.candidates.append(value)
        else:
            parsed.rejected[MISSING_VALUE] += 1
    if header is None:
        raise FeedFormatError("the CSV feed has no header row")
    return parsed


# A comparison of an address object's value inside a STIX pattern. Several may be joined
# with OR (and AND, which STIX reads per observation): every compared value is listed.
_STIX_COMPARISON = re.compile(
    r"(ipv4-addr|ipv6-addr):value\s*(?:=|ISSUBSET)\s*'((?:[^'\\]|\\.)*)'", re.IGNORECASE
)


def _timestamp(value: object, field_name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field_name} is not a timestamp")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_stix(text: str, now: datetime) -> Parsed:
    try:
        bundle = json.loads(text)
    except ValueError as exc:
        raise FeedFormatError(f"the STIX feed is not JSON: {exc}") from None
    if not isinstance(bundle, Mapping) or bundle.get("type") != "bundle":
        raise FeedFormatError('the STIX feed is not a bundle (no "type": "bundle")')
    objects = bundle.get("objects", [])
    if not isinstance(objects, list):
        raise FeedFormatError("the STIX bundle's objects is not a list")
    parsed = Parsed()
    for item in objects:
        if not isinstance(item, Mapping) or item.get("type") != "indicator":
            continue
        reason = _stix_exclusion(item, now)
        if reason:
            parsed.rejected[reason] += 1
            continue
        values = [match.group(2) for match in _STIX_COMPARISON.finditer(item["pattern"])]
        if not values:
            parsed.rejected[STIX_NOT_ADDRESS] += 1
        parsed.candidates.extend(value.replace("\\'", "'") for value in values)
    return parsed


def _stix_exclusion(item: Mapping[str, Any], now: datetime) -> str | None:
    if not isinstance(item.get("pattern"), str):
        return MALFORMED_LINE
    if item.get("pattern_type", "stix") != "stix":
        return STIX_UNSUPPORTED
    if item.get("revoked") is True:
        return STIX_REVOKED
    try:
        valid_until = _timestamp(item.get("valid_until"), "valid_until")
        valid_from = _timestamp(item.get("valid_from"), "valid_from")
    except ValueError:
        return MALFORMED_LINE
    if valid_until is not None and valid_until <= now:
        return STIX_EXPIRED
    if valid_from is not None and valid_from > now:
        return STIX_NOT_YET_VALID
    return None


def parser_for(feed_format: str, column: str = "") -> Callable[[str, datetime], Parsed]:
    """The parser of ``feed_format`` as ``(text, now) -> Parsed``."""
    if feed_format == "plain":
        return lambda text, now: parse_plain(text)
    if feed_format == "drop":
        return lambda text, now: parse_drop(text)
    if feed_format == "csv":
        return lambda text, now: parse_csv(text, column)
    if feed_format == "stix":
        return parse_stix
    raise ValueError(f"unknown feed format {feed_format!r}; use one of {', '.join(FORMATS)}")
