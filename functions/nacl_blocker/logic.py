"""Deny attacker addresses in network ACLs, expire the entries, never halt on drift.

Model. Network ACLs are small (20 entries per direction by default, 40 at most) and
ordered by rule number, so this remediator writes only inside a reserved, inclusive
rule-number range (``RULE_RANGE_START``..``RULE_RANGE_END``) and keeps at most
``CAPACITY`` entries per ACL and direction. Every entry is a DENY of one host (``/32``
through ``CidrBlock``, ``/128`` through ``Ipv6CidrBlock``) for all protocols. The DynamoDB
state table records each block (its expiry) and proves which entries are ours: an entry in
the range is ours only if a *seat* names exactly its rule number and CIDR. Anything else in
the range is foreign: it is never changed or adopted, its number is never used, and every
sweep reports it.

Item layout (partition key ``pk``, TTL attribute ``expires_at``)::

    pk           "entry#<acl id>#<ingress|egress>#<cidr>"      one block (a *row*)
    nacl_id, direction, cidr
    expires_at   epoch seconds; only ever moves later (max of existing and new)
    seat         index of the seat holding its entry (absent until placed)
    rule_number  the entry's rule number, once placed (for people, and a second proof of
                 ownership should the seat be lost)
    first_seen   epoch seconds of the first block
    last_seen    epoch seconds of the latest block
    hit_count    blocks requested for this address in this ACL and direction
    finding_ids  string set of GuardDuty finding ids that named it (absent for manual)
    reason       why it was last blocked

    pk           "seat#<acl id>#<ingress|egress>#<index>"      one unit of CAPACITY
    nacl_id, direction, seat (the index, 0..CAPACITY-1), cidr
    rule_number  the entry's rule number (absent while it is being chosen)
    releasing    present while the seat's entry is being removed (the remover's token)
    heir         the address the seat goes to once it is (an eviction), if any

Seats carry no ``expires_at`` on purpose: DynamoDB TTL may delete an expired row days
later, and the seat is what still proves the left-behind entry ours so that a sweep removes
it. The same table holds Powertools idempotency records (``pk`` = ``finding#<hash>``);
everything here reads only the ``entry#`` and ``seat#`` prefixes.

Concurrency. Three conditional mechanisms, each guarding one invariant:

- *Capacity*: a seat is taken with a conditional put (``attribute_not_exists(pk)``) on an
  index below ``CAPACITY``, so no interleaving of writers holds more than ``CAPACITY``
  seats, and a seat holds at most one entry.
- *Rule numbers*: the ACL itself refuses a second entry with the same number and direction
  (``NetworkAclEntryAlreadyExists``); the loser re-reads the ACL and the seats, picks another
  free number and tries again, within a bounded number of attempts with jittered backoff.
  The number is written to the seat *before* the entry is created, so a crash right after
  ``CreateNetworkAclEntry`` still leaves the entry provably ours. Numbers named by any
  seat count as taken, each seat prefers its own number (``start + index``), and an
  eviction hands the evicted seat *and its number* to the evicting address in one
  conditional write, so collisions stay rare even when every placement must evict.
- *One entry per address*: a row links to its seat with a conditional update
  (``attribute_not_exists(seat)``); a writer that loses the link for the same address
  releases its own seat.

Removal keeps a seat alive until its entry is gone. The seat is first marked
``releasing`` (conditional on being exactly as read), then the entry is removed after a
fresh read of the ACL, then the seat is deleted or, for an eviction, handed with its number
to the evicting address (``heir``). Expiry and unblock delete the row before marking; an
eviction marks first and then deletes the row (conditional on its expiry being unchanged,
so a concurrent re-block wins and the mark is undone), so other writers never see a
half-evicted seat as an orphan to take. A remover that stops half-way leaves a marked seat
that the next sweep finishes. A writer reads its seat once more after creating an entry and
deletes the entry if the seat changed meanwhile; with the remover's read after marking,
whichever of the two comes last removes it, so no entry outlives its seat.
``DeleteNetworkAclEntry`` takes no condition, hence the fresh read just before each delete;
EC2's API is eventually consistent, which can cost a retry.

Ambiguous answers. botocore retries a request whose connection dropped, and the retry of a
write that had landed answers as if a concurrent writer had got there first
(``NetworkAclEntryAlreadyExists``, ``ConditionalCheckFailedException``, a missing entry).
Each write whose answer could be its own echo reads the state back before believing it: an
entry that is exactly this deny, a row that is gone, a seat marked with this call's token,
a row linked to this seat, an entry that is no longer there. Without that, a create taken
for a lost race skipped the check after creation and left an entry nothing named.

Drift. Each sweep reconciles the table and the ACLs both ways and carries on, whatever it
finds: expired rows lose their entry and seat; a seat with no row (row deleted by hand or by
TTL) loses its entry; a recorded, unexpired block whose entry is missing is re-created (the
table is the record of intent, as in waf_blocker: undo a block with the ``unblock`` action,
not by hand), on a new number when its old one is taken; seats over ``CAPACITY`` are
evicted; an ACL that no longer exists has its rows and seats dropped. Foreign entries are
reported and left alone, except one that is exactly a deny this remediator writes (one
host, all protocols) and has stayed unrecorded for ``ORPHAN_GRACE_SECONDS``: that is ours
whose record was lost (a delete decided on a stale read), and it is removed and reported.
An emptied table therefore leaves other entries alone for good, and its own denies for a
day.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from functions.common import addresses, aws, report
from functions.common.blocking import (  # noqa: F401  (re-exported: callers use logic.X)
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    DEADLINE_MARGIN_SECONDS,
    DEFAULT_BLOCK_TTL_SECONDS,
    DEFAULT_SEVERITY_THRESHOLD,
    MAX_ADDRESSES_PER_REQUEST,
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    SYSTEM_CLOCK,
    Attempts,
    BlockRequest,
    Clock,
    DirectRequest,
    GuardDutyFinding,
    GuardDutyFindingEvent,
    Origin,
    SweepRequest,
    UnblockRequest,
    backoff,
    handle_guardduty,
    iso,
    lift_reason,
    persistence_layer,
    report_severity,
)
from functions.common.finding_catalog import Role
from functions.common.intake import Batch, Finding

FUNCTION_NAME = "nacl_blocker"
logger = Logger(service=FUNCTION_NAME, child=True)

ROW_PREFIX = "entry#"
SEAT_PREFIX = "seat#"
ORPHAN_PREFIX = "orphan#"
# An entry in the range that is exactly a deny this remediator writes, yet no row or seat
# names, is ours whose record was lost (a delete decided on a stale read, a row deleted by
# hand with its seat): reported by every sweep, and removed once it has been so this long.
ORPHAN_GRACE_SECONDS = 24 * 3600
EGRESS_DISABLED = (
    "outbound malicious destination: only an egress entry answers it, and egress is not "
    "enabled (egress_enabled)"
)
# 32767 is the ACL's fixed catch-all rule; EC2 accepts 1..32766 for the rest.
MIN_RULE_NUMBER = 1
MAX_RULE_NUMBER = 32766
# AWS's adjustable quota of rules per ACL and direction tops out at 40.
MAX_CAPACITY = 40
DIRECTIONS = ("ingress", "egress")

# A placement that has to evict takes two attempts (evict, then place). Eight writers at
# CAPACITY (tests/e2e) needed at most seven in 600 placements; ten keeps the worst-case
# backoff under ten seconds and leaves the rest to Lambda's own retry of the event. Give
# the function a timeout of 30 s or more.
MAX_ATTEMPTS = 10
# Reads of the eventually consistent DescribeNetworkAcls before an entry's absence (before
# a delete) or presence (after one) is believed; with the backoff, under a second.
VERIFY_READS = 5

# AWS answers InvalidNetworkAclID.NotFound; moto answers InvalidRouteTableID.NotFound. The
# request names one ACL, so either code means that ACL is gone.
_ACL_NOT_FOUND = frozenset({"InvalidNetworkAclID.NotFound", "InvalidRouteTableID.NotFound"})
# What botocore raises when a request may or may not have taken effect: a service error
# (possibly the answer to a retry of a request that landed), a connection that dropped or
# timed out, or an answer it could not parse.
_AMBIGUOUS = (ClientError, BotoCoreError, ResponseParserError)
_NACL_ID = re.compile(r"acl-[0-9a-f]{8,17}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")


class ConfigError(ValueError):
    """The function's environment is wrong: a deployment bug, not bad input."""


class PlacementError(RuntimeError):
    """An entry could not be placed within the retry budget; Lambda should retry."""


class _Conflict(Exception):
    """A concurrent writer changed what this attempt read; back off, re-read, re-plan."""


class _Restart(Exception):
    """This attempt changed the state itself (made room, fixed a link); re-read at once."""


class _NoRoom(Exception):
    """The range holds nothing this remediator may evict and no free rule number."""


class _AclGone(Exception):
    """The network ACL does not exist (any more)."""


class _AclFull(Exception):
    """AWS refused the entry: the ACL holds its quota of rules in that direction."""


# AWS counts rules per ACL, direction and IP version (the default rule and the ACL's own
# rules included: 20 by default, 40 at most) and answers this when a create would exceed it.
# moto has no such quota.
ENTRY_LIMIT_EXCEEDED = "NetworkAclEntryLimitExceeded"


# --------------------------------------------------------------------------- configuration


def _json_strings(env: Mapping[str, str], name: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return tuple(default)
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc.msg}") from None
    if not isinstance(decoded, list) or not all(isinstance(item, str) for item in decoded):
        raise ConfigError(f"{name} must be a JSON list of strings, got {raw[:80]!r}")
    return tuple(item.strip() for item in decoded)


@dataclass(frozen=True, slots=True)
class Config:
    state_table: str
    rule_range_start: int
    rule_range_end: int
    nacl_ids: tuple[str, ...] = ()
    capacity: int = 10
    directions: tuple[str, ...] = ("ingress",)
    allowlist: tuple[addresses.IPNetwork, ...] = ()
    block_ttl_seconds: int = DEFAULT_BLOCK_TTL_SECONDS
    severity_threshold: float = DEFAULT_SEVERITY_THRESHOLD
    notify_topic_arn: str = ""
    block_ip_action_arn: str = ""

    def __post_init__(self) -> None:
        for nacl_id in self.nacl_ids:
            if not _NACL_ID.fullmatch(nacl_id):
                raise ConfigError(f"NACL_IDS: {nacl_id!r} is not a network ACL id (acl-...)")
        if len(set(self.nacl_ids)) != len(self.nacl_ids):
            raise ConfigError("NACL_IDS lists a network ACL twice")
        if not MIN_RULE_NUMBER <= self.rule_range_start <= MAX_RULE_NUMBER:
            raise ConfigError(
                f"RULE_RANGE_START must be {MIN_RULE_NUMBER}..{MAX_RULE_NUMBER}, "
                f"got {self.rule_range_start}"
            )
        if not self.rule_range_start <= self.rule_range_end <= MAX_RULE_NUMBER:
            raise ConfigError(
                f"RULE_RANGE_END must be {self.rule_range_start}..{MAX_RULE_NUMBER} "
                f"(RULE_RANGE_START..{MAX_RULE_NUMBER}), got {self.rule_range_end}"
            )
        if not 1 <= self.capacity <= MAX_CAPACITY:
            raise ConfigError(f"CAPACITY must be 1..{MAX_CAPACITY}, got {self.capacity}")
        if (
            not self.directions
            or len(set(self.directions)) != len(self.directions)
            or not set(self.directions) <= set(DIRECTIONS)
        ):
            raise ConfigError(
                f'DIRECTIONS must be ["ingress"] or ["ingress", "egress"], got {self.directions}'
            )
        if not MIN_TTL_SECONDS <= self.block_ttl_seconds <= MAX_TTL_SECONDS:
            raise ConfigError(
                f"BLOCK_TTL_SECONDS must be {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}, "
                f"got {self.block_ttl_seconds}"
            )
        if not 0 <= self.severity_threshold <= 10:
            raise ConfigError(f"SEVERITY_THRESHOLD must be 0..10, got {self.severity_threshold}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"environment variable {name} is required")
            return value

        def number(name: str, raw: str, kind: Callable[[str], Any]) -> Any:
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None

        def optional(name: str, default: str, kind: Callable[[str], Any]) -> Any:
            return number(name, env.get(name, "").strip() or default, kind)

        try:
            allowlist = addresses.parse_allowlist(env.get("ALLOWLIST_CIDRS", ""))
        except ValueError as exc:
            raise ConfigError(f"ALLOWLIST_CIDRS: {exc}") from None
        return cls(
            state_table=required("STATE_TABLE"),
            rule_range_start=number("RULE_RANGE_START", required("RULE_RANGE_START"), int),
            rule_range_end=number("RULE_RANGE_END", required("RULE_RANGE_END"), int),
            nacl_ids=_json_strings(env, "NACL_IDS", []),
            capacity=optional("CAPACITY", "10", int),
            directions=_json_strings(env, "DIRECTIONS", ["ingress"]),
            allowlist=allowlist,
            block_ttl_seconds=optional("BLOCK_TTL_SECONDS", str(DEFAULT_BLOCK_TTL_SECONDS), int),
            severity_threshold=optional(
                "SEVERITY_THRESHOLD", str(DEFAULT_SEVERITY_THRESHOLD), float
            ),
            notify_topic_arn=env.get("NOTIFY_TOPIC_ARN", "").strip(),
            block_ip_action_arn=env.get("BLOCK_IP_ACTION_ARN", "").strip(),
        )

    @property
    def rule_numbers(self) -> range:
        return range(self.rule_range_start, self.rule_range_end + 1)

    @property
    def range_text(self) -> str:
        return f"{self.rule_range_start}-{self.rule_range_end}"


def finding_subnets(resource: Mapping[str, Any]) -> list[str]:
    """Subnet ids of the finding's instance (``instanceDetails.networkInterfaces``).

    Findings come from outside: anything odd-shaped yields nothing rather than an error.
    """
    details = resource.get("instanceDetails")
    interfaces = details.get("networkInterfaces") if isinstance(details, Mapping) else None
    if not isinstance(interfaces, list):
        return []
    found = [
        interface.get("subnetId") for interface in interfaces if isinstance(interface, Mapping)
    ]
    return _dedupe(s for s in found if isinstance(s, str) and _SUBNET_ID.fullmatch(s))


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One direction of one network ACL: the unit that CAPACITY and seats apply to."""

    nacl_id: str
    direction: str

    @property
    def egress(self) -> bool:
        return self.direction == "egress"

    @property
    def key(self) -> str:
        return f"{self.nacl_id}#{self.direction}"

    def __str__(self) -> str:
        return f"{self.nacl_id} {self.direction}"


@dataclass(frozen=True, slots=True)
class Entry:
    rule_number: int
    cidr: str
    action: str
    protocol: str

    def denies(self, cidr: str) -> bool:
        """Is this exactly the entry this remediator writes for ``cidr``?"""
        return self.action == "deny" and self.protocol == "-1" and self.cidr == cidr

    @property
    def has_our_form(self) -> bool:
        """Is this a deny of one host for all protocols, as this remediator writes?"""
        return self.denies(self.cidr) and self.cidr.endswith(("/32", "/128"))


@dataclass(frozen=True, slots=True)
class Acl:
    id: str
    owner: str
    entries: Mapping[tuple[bool, int], Entry]

    def entry(self, target: Target, rule_number: int) -> Entry | None:
        return self.entries.get((target.egress, rule_number))

    def in_range(self, target: Target, numbers: range) -> list[Entry]:
        return sorted(
            (
                e
                for (egress, n), e in self.entries.items()
                if egress == target.egress and n in numbers
            ),
            key=lambda e: e.rule_number,
        )


@dataclass(frozen=True, slots=True)
class Row:
    target: Target
    cidr: str
    expires_at: int
    seat: int | None
    rule_number: int | None


@dataclass(frozen=True, slots=True)
class Seat:
    target: Target
    index: int
    cidr: str
    rule_number: int | None
    releasing: bool = False


@dataclass
class TargetState:
    rows: dict[str, Row] = field(default_factory=dict)
    seats: dict[int, Seat] = field(default_factory=dict)

    def seats_of(self, cidr: str) -> list[Seat]:
        return sorted((s for s in self.seats.values() if s.cidr == cidr), key=lambda s: s.index)

    def is_orphan(self, seat: Seat) -> bool:
        """Not being released, yet no row links to it and none is about to (a row without
        a seat adopts a seat naming its address)."""
        if seat.releasing:
            return False
        row = self.rows.get(seat.cidr)
        return row is None or (row.seat is not None and row.seat != seat.index)

    def owns(self, entry: Entry) -> bool:
        """Is ``entry`` ours: does a seat, or failing that a row, name its number and CIDR?"""
        if not entry.denies(entry.cidr):
            return False
        row = self.rows.get(entry.cidr)
        if row is not None and row.rule_number == entry.rule_number:
            return True
        return any(
            s.rule_number == entry.rule_number and s.cidr == entry.cidr for s in self.seats.values()
        )


# --------------------------------------------------------------------------- state table


def _row_key(target: Target, cidr: str) -> dict[str, Any]:
    return {"pk": {"S": f"{ROW_PREFIX}{target.key}#{cidr}"}}


def _seat_key(target: Target, index: int) -> dict[str, Any]:
    return {"pk": {"S": f"{SEAT_PREFIX}{target.key}#{index}"}}


def _seat_condition(seat: Seat) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A condition that holds while ``seat`` is exactly as read (same address and number)."""
    names = {"#cidr": "cidr", "#number": "rule_number"}
    values: dict[str, Any] = {":cidr": {"S": seat.cidr}}
    if seat.rule_number is None:
        return "#cidr = :cidr AND attribute_not_exists(#number)", names, values
    values[":seen"] = {"N": str(seat.rule_number)}
    return "#cidr = :cidr AND #number = :seen", names, values


def _parse_item(item: Mapping[str, Any]) -> Row | Seat | None:
    """A row or seat from its item; ``None`` (logged) for one edited out of shape."""
    pk = item["pk"]["S"]
    prefix = ROW_PREFIX if pk.startswith(ROW_PREFIX) else SEAT_PREFIX
    try:
        nacl_id, direction, tail = pk.removeprefix(prefix).split("#", 2)
        if direction not in DIRECTIONS:
            raise ValueError(direction)
        target = Target(nacl_id, direction)
        number = item.get("rule_number")
        rule_number = int(number["N"]) if number else None
        if prefix == ROW_PREFIX:
            seat = item.get("seat")
            expires_at = int(item["expires_at"]["N"])
            return Row(target, tail, expires_at, int(seat["N"]) if seat else None, rule_number)
        return Seat(target, int(tail), item["cidr"]["S"], rule_number, "releasing" in item)
    except (KeyError, ValueError):
        logger.warning("skipping unreadable state item", extra={"item": item})
        return None


class StateTable:
    def __init__(self, name: str) -> None:
        self.name = name
        self._db = aws.client("dynamodb")

    def _conditional(self, call: Callable[..., Any], **request: Any) -> bool:
        """Run a conditional write; ``False`` when its condition did not hold."""
        try:
            call(TableName=self.name, **request)
        except ClientError as exc:
            if aws.is_conditional_failure(exc):
                return False
            raise
        return True

    def upsert(
        self,
        target: Target,
        cidr: str,
        *,
        expires_at: int,
        reason: str,
        finding_ids: Sequence[str],
        now: int,
    ) -> int:
        """Record a block; returns the row's expiry, which never moves earlier."""
        names = {
            "#nacl": "nacl_id",
            "#direction": "direction",
            "#cidr": "cidr",
            "#reason": "reason",
            "#last": "last_seen",
            "#first": "first_seen",
            "#expires": "expires_at",
            "#hits": "hit_count",
        }
        values: dict[str, Any] = {
            ":nacl": {"S": target.nacl_id},
            ":direction": {"S": target.direction},
            ":cidr": {"S": cidr},
            ":reason": {"S": reason},
            ":now": {"N": str(now)},
            ":expires": {"N": str(expires_at)},
            ":one": {"N": "1"},
        }
        expression = (
            "SET #nacl = :nacl, #direction = :direction, #cidr = :cidr, #reason = :reason, "
            "#last = :now, #first = if_not_exists(#first, :now), "
            "#expires = if_not_exists(#expires, :expires) ADD #hits :one"
        )
        if finding_ids:
            names["#findings"] = "finding_ids"
            values[":findings"] = {"SS": list(dict.fromkeys(finding_ids))}
            expression += ", #findings :findings"
        response = self._db.update_item(
            TableName=self.name,
            Key=_row_key(target, cidr),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        current = int(response["Attributes"]["expires_at"]["N"])
        if current >= expires_at:
            return current
        # DynamoDB has no max(); a conditional SET gives "extend, never shorten", and a
        # failed condition means a concurrent writer extended it further already.
        self._conditional(
            self._db.update_item,
            Key=_row_key(target, cidr),
            UpdateExpression="SET #expires = :expires",
            ConditionExpression="#expires < :expires",
            ExpressionAttributeNames={"#expires": "expires_at"},
            ExpressionAttributeValues={":expires": {"N": str(expires_at)}},
        )
        return expires_at

    def load(self, target: Target | None = None) -> dict[Target, TargetState]:
        """Rows and seats (strongly consistent), of one target or of all, by target."""
        scope = f"{target.key}#" if target else ""
        request: dict[str, Any] = {
            "TableName": self.name,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :rows) OR begins_with(pk, :seats)",
            "ExpressionAttributeValues": {
                ":rows": {"S": f"{ROW_PREFIX}{scope}"},
                ":seats": {"S": f"{SEAT_PREFIX}{scope}"},
            },
        }
        states: dict[Target, TargetState] = {}
        while True:
            page = self._db.scan(**request)
            for item in page.get("Items", []):
                parsed = _parse_item(item)
                if parsed is None:
                    continue
                state = states.setdefault(parsed.target, TargetState())
                if isinstance(parsed, Row):
                    state.rows[parsed.cidr] = parsed
                else:
                    state.seats[parsed.index] = parsed
            if "LastEvaluatedKey" not in page:
                return states
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def load_one(self, target: Target) -> TargetState:
        return self.load(target).get(target) or TargetState()

    def seat(self, target: Target, index: int) -> Seat | None:
        item = self._item(_seat_key(target, index))
        parsed = _parse_item(item) if item else None
        return parsed if isinstance(parsed, Seat) else None

    def take_seat(self, target: Target, index: int, cidr: str) -> bool:
        return self._conditional(
            self._db.put_item,
            Item={
                **_seat_key(target, index),
                "nacl_id": {"S": target.nacl_id},
                "direction": {"S": target.direction},
                "seat": {"N": str(index)},
                "cidr": {"S": cidr},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def _item(self, key: dict[str, Any]) -> dict[str, Any]:
        """The item now (strongly consistent); empty when there is none."""
        item: dict[str, Any] = self._db.get_item(
            TableName=self.name, Key=key, ConsistentRead=True
        ).get("Item", {})
        return item

    def link_seat(self, target: Target, cidr: str, index: int) -> bool:
        """Link the row to seat ``index``; ``True`` when it links there now.

        A failed condition with the row linked to this very seat is this request's own
        write, retried by botocore after a lost response, not a concurrent link.
        """
        key = _row_key(target, cidr)
        return self._conditional(
            self._db.update_item,
            Key=key,
            UpdateExpression="SET #seat = :seat",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#seat)",
            ExpressionAttributeNames={"#seat": "seat"},
            ExpressionAttributeValues={":seat": {"N": str(index)}},
        ) or self._item(key).get("seat") == {"N": str(index)}

    def record_number(self, target: Target, cidr: str, index: int, rule_number: int) -> bool:
        return self._conditional(
            self._db.update_item,
            Key=_row_key(target, cidr),
            UpdateExpression="SET #number = :number",
            ConditionExpression="#seat = :seat",
            ExpressionAttributeNames={"#seat": "seat", "#number": "rule_number"},
            ExpressionAttributeValues={
                ":seat": {"N": str(index)},
                ":number": {"N": str(rule_number)},
            },
        )

    def unlink_seat(self, target: Target, cidr: str, index: int) -> bool:
        return self._conditional(
            self._db.update_item,
            Key=_row_key(target, cidr),
            UpdateExpression="REMOVE #seat",
            ConditionExpression="#seat = :seat",
            ExpressionAttributeNames={"#seat": "seat"},
            ExpressionAttributeValues={":seat": {"N": str(index)}},
        )

    def number_seat(self, seat: Seat, rule_number: int) -> bool:
        condition, names, values = _seat_condition(seat)
        return self._conditional(
            self._db.update_item,
            Key=_seat_key(seat.target, seat.index),
            UpdateExpression="SET #number = :number",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":number": {"N": str(rule_number)}},
        )

    def drop_unused_seat(self, seat: Seat) -> bool:
        """Give back a seat just taken, before it was numbered."""
        condition, names, values = _seat_condition(seat)
        return self._conditional(
            self._db.delete_item,
            Key=_seat_key(seat.target, seat.index),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def mark_releasing(self, seat: Seat, heir: str | None) -> bool:
        """Mark ``seat`` (exactly as read) as being released; ``True`` if this call did.

        The mark is a token of this call, so that a failed condition can tell this call's
        own mark, written by an attempt whose response was lost and retried by botocore,
        from a concurrent remover's: only the first lets the release go on.
        """
        token = uuid.uuid4().hex
        condition, names, values = _seat_condition(seat)
        names["#releasing"] = "releasing"
        values[":token"] = {"S": token}
        expression = "SET #releasing = :token"
        if heir is not None:
            names["#heir"] = "heir"
            values[":heir"] = {"S": heir}
            expression += ", #heir = :heir"
        key = _seat_key(seat.target, seat.index)
        return self._conditional(
            self._db.update_item,
            Key=key,
            UpdateExpression=expression,
            ConditionExpression=f"{condition} AND attribute_not_exists(#releasing)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ) or self._item(key).get("releasing") == {"S": token}

    def unmark_releasing(self, seat: Seat) -> bool:
        """Undo :meth:`mark_releasing` when the eviction it started lost its race."""
        return self._conditional(
            self._db.update_item,
            Key=_seat_key(seat.target, seat.index),
            UpdateExpression="REMOVE #releasing, #heir",
            ConditionExpression="attribute_exists(#releasing) AND #cidr = :cidr",
            ExpressionAttributeNames={"#releasing": "releasing", "#heir": "heir", "#cidr": "cidr"},
            ExpressionAttributeValues={":cidr": {"S": seat.cidr}},
        )

    def finish_release(self, seat: Seat, heir: str | None) -> bool:
        """Delete the releasing seat, or hand it and its rule number to ``heir``.

        The number passes with the seat: a seat names it throughout, so no other writer
        ever sees it free and races the heir for it.
        """
        names = {"#releasing": "releasing", "#cidr": "cidr"}
        values: dict[str, Any] = {":cidr": {"S": seat.cidr}}
        condition = "attribute_exists(#releasing) AND #cidr = :cidr"
        if heir is None:
            return self._conditional(
                self._db.delete_item,
                Key=_seat_key(seat.target, seat.index),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        names["#heir"] = "heir"
        values[":heir"] = {"S": heir}
        return self._conditional(
            self._db.update_item,
            Key=_seat_key(seat.target, seat.index),
            UpdateExpression="SET #cidr = :heir REMOVE #releasing, #heir",
            ConditionExpression=f"{condition} AND #heir = :heir",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def delete_row_if_unchanged(self, row: Row) -> bool:
        """Delete the row as read; ``True`` once it is gone, ``False`` while it stands
        re-blocked (a concurrent writer moved its expiry).

        A failed condition on a row that no longer exists is not a re-block: the row was
        deleted, by a concurrent unblock or by this very request, whose first attempt
        succeeded and whose response was lost before botocore retried it.
        """
        if self._conditional(
            self._db.delete_item,
            Key=_row_key(row.target, row.cidr),
            ConditionExpression="#expires = :seen",
            ExpressionAttributeNames={"#expires": "expires_at"},
            ExpressionAttributeValues={":seen": {"N": str(row.expires_at)}},
        ):
            return True
        return not self._item(_row_key(row.target, row.cidr))

    def delete_row(self, target: Target, cidr: str) -> bool:
        """Delete a row; ``True`` if there was one."""
        response = self._db.delete_item(
            TableName=self.name, Key=_row_key(target, cidr), ReturnValues="ALL_OLD"
        )
        return "Attributes" in response

    def orphan_since(self, target: Target, entry: Entry, now: int) -> int:
        """When the sweeps first saw ``entry`` unrecorded (now, on first sight)."""
        key = {"pk": {"S": f"{ORPHAN_PREFIX}{target.key}#{entry.rule_number}#{entry.cidr}"}}
        # A record past its expiry is from an earlier episode: this one starts now.
        started = self._conditional(
            self._db.put_item,
            Item={
                **key,
                "first_seen": {"N": str(now)},
                "expires_at": {"N": str(now + 2 * ORPHAN_GRACE_SECONDS)},
            },
            ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
            ExpressionAttributeValues={":now": {"N": str(now)}},
        )
        if started:
            return now
        found = self._db.get_item(TableName=self.name, Key=key, ConsistentRead=True)
        return int(found.get("Item", {}).get("first_seen", {}).get("N", now))

    def forget_orphan(self, target: Target, entry: Entry) -> None:
        key = {"pk": {"S": f"{ORPHAN_PREFIX}{target.key}#{entry.rule_number}#{entry.cidr}"}}
        self._db.delete_item(TableName=self.name, Key=key)

    def drop_acl(self, nacl_id: str) -> int:
        """Delete every row and seat of an ACL that no longer exists; the rows dropped."""
        dropped = 0
        for target, state in self.load().items():
            if target.nacl_id != nacl_id:
                continue
            for cidr in state.rows:
                dropped += self.delete_row(target, cidr)
            for seat in state.seats.values():
                self._db.delete_item(TableName=self.name, Key=_seat_key(target, seat.index))
        return dropped


# --------------------------------------------------------------------------- network ACLs


def _entry(raw: Mapping[str, Any]) -> Entry:
    block = str(raw.get("CidrBlock") or raw.get("Ipv6CidrBlock") or "")
    try:
        cidr = addresses.canonical_entry(block) if block else ""
    except ValueError:
        cidr = block
    return Entry(
        rule_number=int(raw["RuleNumber"]),
        cidr=cidr,
        action=str(raw.get("RuleAction", "")).lower(),
        protocol=str(raw.get("Protocol", "")),
    )


class NetworkAcls:
    def __init__(self) -> None:
        self._ec2 = aws.client("ec2")

    def read(self, nacl_id: str) -> Acl | None:
        """The ACL and every entry it holds now; ``None`` if it does not exist."""
        try:
            response = self._ec2.describe_network_acls(NetworkAclIds=[nacl_id])
        except ClientError as exc:
            if aws.error_code(exc) in _ACL_NOT_FOUND:
                return None
            raise
        found = response.get("NetworkAcls", [])
        if not found:
            return None
        raw = found[0]
        entries = {(bool(e["Egress"]), int(e["RuleNumber"])): _entry(e) for e in raw["Entries"]}
        return Acl(id=raw["NetworkAclId"], owner=str(raw.get("OwnerId", "")), entries=entries)

    def for_subnets(self, subnet_ids: Sequence[str]) -> list[str]:
        """The ACLs associated with ``subnet_ids`` (in this account and region)."""
        paginator = self._ec2.get_paginator("describe_network_acls")
        found: set[str] = set()
        for page in paginator.paginate(
            Filters=[{"Name": "association.subnet-id", "Values": list(subnet_ids)}]
        ):
            found.update(acl["NetworkAclId"] for acl in page.get("NetworkAcls", []))
        return sorted(found)

    def create_deny(self, target: Target, rule_number: int, cidr: str) -> bool:
        """Deny ``cidr`` at ``rule_number``; ``False`` when another entry holds the number.

        An error does not prove the entry absent. ``NetworkAclEntryAlreadyExists`` for an
        entry that is exactly this deny is typically this very call, whose first attempt
        succeeded but whose response was lost, retried by botocore; an error botocore
        could not parse or a dropped connection may follow a create that landed too. So a
        fresh read decides: the deny in place means created. Reporting it as "taken" (or
        raising) would skip the check that follows every creation and could leave the
        entry behind with nothing naming it. The caller's seat names the number, and no
        other seat may, so an identical entry there is the seat's own.
        """
        block = "Ipv6CidrBlock" if ":" in cidr else "CidrBlock"
        try:
            self._ec2.create_network_acl_entry(
                NetworkAclId=target.nacl_id,
                RuleNumber=rule_number,
                Protocol="-1",
                RuleAction="deny",
                Egress=target.egress,
                **{block: cidr},
            )
        except _AMBIGUOUS as exc:
            acl = self.read(target.nacl_id)
            entry = acl.entry(target, rule_number) if acl else None
            if entry is not None and entry.denies(cidr):
                return True
            if aws.error_code(exc) == "NetworkAclEntryAlreadyExists":
                return False
            if aws.error_code(exc) == ENTRY_LIMIT_EXCEEDED:
                raise _AclFull(
                    f"AWS refused the entry: {target} holds its quota of rules for IPv"
                    f"{6 if ':' in cidr else 4} (the ACL's own rules and the default rule "
                    "count too); lower capacity or raise the quota"
                ) from None
            raise
        return True

    def delete(self, target: Target, rule_number: int) -> None:
        """Remove the entry at ``rule_number``; done once no entry holds that number.

        Two removers of one entry (a released seat's remover and its creator) may race,
        and a delete whose response was lost is retried by botocore: either way the second
        request finds nothing. AWS answers ``InvalidNetworkAclEntry.NotFound``; moto
        answers an HTML 500 that botocore cannot parse (its lookup raises StopIteration).
        Whatever the error, a fresh read decides: the entry gone is success, the entry
        still there re-raises.
        """
        try:
            self._ec2.delete_network_acl_entry(
                NetworkAclId=target.nacl_id, RuleNumber=rule_number, Egress=target.egress
            )
        except _AMBIGUOUS:
            acl = self.read(target.nacl_id)
            if acl is not None and acl.entry(target, rule_number) is not None:
                raise


# --------------------------------------------------------------------------- placement


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a block's entry is; ``rule_number`` ``None``: it was withdrawn meanwhile."""

    rule_number: int | None
    created: bool


@dataclass(frozen=True, slots=True)
class Eviction:
    target: Target
    cidr: str
    rule_number: int | None
    expires_at: int | None  # None: no block was recorded for it


class Blocker:
    """Places, evicts, releases and sweeps entries of one remediator configuration."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.table = StateTable(config.state_table)
        self.acls = NetworkAcls()

    def _read(self, target: Target) -> Acl:
        acl = self.acls.read(target.nacl_id)
        if acl is None:
            raise _AclGone(target.nacl_id)
        return acl

    def _settled_entry(
        self, target: Target, rule_number: int, settled: Callable[[Entry | None], bool]
    ) -> Entry | None:
        """The entry at ``rule_number`` (``None``: none, or the ACL is gone), read again
        until ``settled`` holds or :data:`VERIFY_READS` reads are spent.

        ``DescribeNetworkAcls`` is eventually consistent in AWS (moto answers at once): a
        read right after a create may miss the entry, and one right after a delete may
        still show it. One read is not proof of either.
        """
        attempts = Attempts(self.clock, VERIFY_READS)
        entry: Entry | None = None
        for attempt in attempts:
            acl = self.acls.read(target.nacl_id)
            entry = acl.entry(target, rule_number) if acl else None
            if acl is None or settled(entry) or not attempts.wait(attempt):
                break
        return entry

    def _delete_if_denies(self, target: Target, rule_number: int, cidr: str) -> bool | None:
        """Remove the entry at ``rule_number`` if it is still our deny of ``cidr``.

        ``True``: removed and seen gone; ``False``: no such deny, after reading until it
        showed or the reads ran out; ``None``: deleted but still shown when the reads ran
        out, so the caller keeps the seat marked and the next sweep finishes the job.
        """
        entry = self._settled_entry(target, rule_number, lambda e: e is not None)
        if entry is None or not entry.denies(cidr):
            return False
        self.acls.delete(target, rule_number)
        if self._settled_entry(target, rule_number, lambda e: e is None) is not None:
            logger.warning(
                "deleted entry still shown; the next sweep checks again",
                extra={"target": str(target), "rule_number": rule_number},
            )
            return None
        return True

    def release(self, seat: Seat, heir: str | None = None) -> int | None:
        """Remove ``seat``'s entry, then the seat (or hand it to ``heir``); the rule number
        removed, if any.

        The seat is marked first, so at every step until its entry is gone a seat still
        names the entry and proves it ours: a remover that stops half-way leaves work the
        next sweep finishes, never an entry that looks foreign. If the seat changed since it
        was read, whoever changed it owns the follow-up.
        """
        if not seat.releasing and not self.table.mark_releasing(seat, heir):
            return None
        removed = None
        if seat.rule_number is not None:
            deleted = self._delete_if_denies(seat.target, seat.rule_number, seat.cidr)
            if deleted is None:
                return None  # the seat stays marked: the next sweep verifies and finishes
            removed = seat.rule_number if deleted else None
        self.table.finish_release(seat, heir)
        return removed

    def remove_entries(self, target: Target, cidr: str, state: TargetState) -> list[int]:
        """Release the seats of ``cidr`` and remove its entries; the rule numbers removed.

        Call it once the row is gone. An entry only the row names (its seat was lost) goes
        too, unless a seat names that number now.
        """
        removed = [n for seat in state.seats_of(cidr) if (n := self.release(seat)) is not None]
        row = state.rows.get(cidr)
        number = row.rule_number if row else None
        if (
            number is not None
            and number not in removed
            and all(s.rule_number != number for s in state.seats.values())
            and self._delete_if_denies(target, number, cidr)
        ):
            removed.append(number)
        return removed

    def withdraw(self, target: Target, cidr: str, state: TargetState) -> list[int]:
        """Drop the block of ``cidr`` (row, seats, entries); the rule numbers removed."""
        self.table.delete_row(target, cidr)
        return self.remove_entries(target, cidr, state)

    def place(
        self, target: Target, cidr: str, *, keep: frozenset[str], evicted: list[Eviction]
    ) -> Placement:
        """Make the recorded block of ``cidr`` an entry in the reserved range.

        ``keep``: addresses of the same request, never evicted to make room for each other.
        Raises :class:`_NoRoom` when nothing may be evicted and no number is free,
        :class:`_AclGone`, or :class:`PlacementError` when the attempts run out.
        """
        last_error = ""
        attempts = Attempts(self.clock, MAX_ATTEMPTS)
        for attempt in attempts:
            try:
                return self._place_once(target, cidr, keep, evicted)
            except _Restart:
                continue
            except _Conflict as exc:
                last_error = str(exc)
            logger.info(
                "placement conflicted; retrying",
                extra={"target": str(target), "cidr": cidr, "attempt": attempt + 1},
            )
            if not attempts.wait(attempt):
                break
        raise PlacementError(
            f"{cidr} was not placed in {target} {attempts.summary()}; "
            f"last conflict: {last_error or 'none'}"
        )

    def _place_once(
        self, target: Target, cidr: str, keep: frozenset[str], evicted: list[Eviction]
    ) -> Placement:
        # The ACL first, the table second: an entry seen in the ACL had its seat numbered
        # before it was created, so the later table read shows that seat.
        acl = self._read(target)
        state = self.table.load_one(target)
        row = state.rows.get(cidr)
        if row is None:
            return Placement(None, created=False)
        seat = self._seat_for(target, acl, state, row, keep, evicted)
        number = seat.rule_number
        if number is not None:
            entry = acl.entry(target, number)
            if entry is not None and entry.denies(cidr):
                return self._placed(row, seat, number, created=False)
            if entry is not None:
                number = None  # taken meanwhile, by hand or by a writer that won the race
        if number is None:
            adopted = self._adoptable(target, acl, state, row, seat)
            number = adopted if adopted is not None else self._free_number(target, acl, state, seat)
            if number is None:
                self.make_room(target, acl, state, keep, evicted)
            if not self.table.number_seat(seat, number):
                raise _Conflict(f"seat {seat.index} changed while numbering it")
            if adopted is not None:
                return self._placed(row, seat, adopted, created=False)
        if not self.acls.create_deny(target, number, cidr):
            raise _Conflict(f"rule {number} was taken")
        current = self.table.seat(target, seat.index)
        if current is None or (current.cidr, current.rule_number, current.releasing) != (
            cidr,
            number,
            False,
        ):
            self._delete_if_denies(target, number, cidr)
            raise _Conflict(f"seat {seat.index} was released while its entry was created")
        return self._placed(row, seat, number, created=True)

    def _placed(self, row: Row, seat: Seat, number: int, *, created: bool) -> Placement:
        if row.rule_number != number:
            # Informational (and the fallback proof of ownership): a lost race here only
            # means the row is being re-placed, which records the number again.
            self.table.record_number(row.target, row.cidr, seat.index, number)
        return Placement(number, created=created)

    def _adoptable(
        self, target: Target, acl: Acl, state: TargetState, row: Row, seat: Seat
    ) -> int | None:
        """The row's recorded number, if our entry is still there and no other seat names it.

        That is the entry of a seat that was lost (deleted by hand): take it back rather
        than deny the same address twice and leave the old entry looking foreign.
        """
        number = row.rule_number
        if number is None:
            return None
        entry = acl.entry(target, number)
        if entry is None or not entry.denies(row.cidr):
            return None
        if any(s.rule_number == number for s in state.seats.values() if s.index != seat.index):
            return None
        return number

    def _seat_for(
        self,
        target: Target,
        acl: Acl,
        state: TargetState,
        row: Row,
        keep: frozenset[str],
        evicted: list[Eviction],
    ) -> Seat:
        mine = [s for s in state.seats_of(row.cidr) if not s.releasing]
        if row.seat is not None:
            linked = state.seats.get(row.seat)
            if linked is not None and linked.cidr == row.cidr and not linked.releasing:
                for other in mine:
                    if other.index != linked.index:
                        self.release(other)  # lost the link race for this same address
                return linked
            self.table.unlink_seat(target, row.cidr, row.seat)
            raise _Restart
        if mine:
            # A writer for this address took a seat and stopped before linking it.
            if self.table.link_seat(target, row.cidr, mine[0].index):
                return mine[0]
            raise _Conflict("the row was linked concurrently")
        if len(state.seats) >= self.config.capacity:
            # The freed seat goes straight to this address, so no other writer can take it
            # between the eviction and the next read.
            self.make_room(target, acl, state, keep, evicted, heir=row.cidr)
        index = min(set(range(self.config.capacity)) - state.seats.keys())
        if not self.table.take_seat(target, index, row.cidr):
            raise _Conflict(f"seat {index} was taken")
        seat = Seat(target, index, row.cidr, None)
        if not self.table.link_seat(target, row.cidr, index):
            self.table.drop_unused_seat(seat)
            raise _Conflict("the row was linked or withdrawn concurrently")
        return seat

    def _free_number(self, target: Target, acl: Acl, state: TargetState, seat: Seat) -> int | None:
        taken = {entry.rule_number for entry in acl.in_range(target, self.config.rule_numbers)}
        taken |= {
            s.rule_number
            for s in state.seats.values()
            if s.index != seat.index and s.rule_number is not None
        }
        # Each seat has its own preferred number, so writers holding different seats do
        # not all reach for the lowest free one at once.
        preferred = self.config.rule_range_start + seat.index
        if preferred in self.config.rule_numbers and preferred not in taken:
            return preferred
        return next((n for n in self.config.rule_numbers if n not in taken), None)

    def make_room(
        self,
        target: Target,
        acl: Acl,
        state: TargetState,
        keep: frozenset[str],
        evicted: list[Eviction],
        heir: str | None = None,
    ) -> NoReturn:
        """Free one seat and its number (the seat going to ``heir``), then restart.

        The block expiring first goes. A seat no row links to has no recorded expiry, so it
        goes before any block. Among blocks expiring together, one whose entry is already
        in place goes before one still being placed (so concurrent writers rarely undo each
        other's work), then any at random (so they do not all pick the same one).
        """
        orphans = sorted(
            (s for s in state.seats.values() if state.is_orphan(s)), key=lambda s: s.index
        )
        if orphans:
            seat = orphans[0]
            number = self.release(seat, heir)
            if number is not None:
                evicted.append(Eviction(target, seat.cidr, number, None))
            raise _Restart
        candidates = [s for s in state.seats.values() if not s.releasing and s.cidr not in keep]
        if not candidates:
            if any(s.releasing for s in state.seats.values()):
                raise _Conflict("waiting for seats being released")
            foreign = [
                e for e in acl.in_range(target, self.config.rule_numbers) if not state.owns(e)
            ]
            raise _NoRoom(
                f"no free rule number in the reserved range {self.config.range_text} and "
                f"nothing this remediator may evict ({len(foreign)} number(s) there are held "
                "by entries it did not create)"
            )

        def order(seat: Seat) -> tuple[int, bool, float]:
            entry = acl.entry(target, seat.rule_number) if seat.rule_number is not None else None
            in_place = entry is not None and entry.denies(seat.cidr)
            return state.rows[seat.cidr].expires_at, not in_place, random.random()

        seat = min(candidates, key=order)
        row = state.rows[seat.cidr]
        # The seat is marked before the row goes: in between, other writers see a seat
        # being released, not an orphan they could take for themselves.
        if not self.table.mark_releasing(seat, heir):
            raise _Conflict(f"seat {seat.index} was changed or evicted concurrently")
        if not self.table.delete_row_if_unchanged(row):
            self.table.unmark_releasing(seat)
            raise _Conflict(f"{row.cidr} was re-blocked while being evicted")
        self.release(replace(seat, releasing=True), heir)
        evicted.append(Eviction(target, seat.cidr, seat.rule_number, row.expires_at))
        raise _Restart

    def in_place(self, row: Row, acl: Acl, state: TargetState) -> bool:
        seat = state.seats.get(row.seat) if row.seat is not None else None
        if seat is None or seat.cidr != row.cidr or seat.rule_number is None:
            return False
        entry = acl.entry(row.target, seat.rule_number)
        return entry is not None and entry.denies(row.cidr)

    def sweep_target(self, target: Target, now: int, out: _Sweep) -> None:
        """Reconcile one ACL direction with the table, both ways; report what it saw."""
        numbers = self.config.rule_numbers
        # Expired blocks. DynamoDB TTL deletes rows lazily (typically within days), so
        # expiry is decided here from expires_at, never from a row's absence alone.
        # Blocks the allowlist covers now: it changed since they were written, and no
        # block may outlive that (nor be re-created below).
        state = self.table.load_one(target)
        for row in sorted(state.rows.values(), key=lambda r: r.cidr):
            lifted = None if row.expires_at <= now else lift_reason(row.cidr, self.config.allowlist)
            if (row.expires_at > now and lifted is None) or not self.table.delete_row_if_unchanged(
                row
            ):
                continue
            removed = self.remove_entries(target, row.cidr, state)
            number = removed[0] if removed else None
            rule = f" (removed rule {number})" if number is not None else ""
            out.entry(
                "lifted" if lifted else "expired",
                target,
                row.cidr,
                number,
                f"Unblocked {row.cidr} in {target}{rule}: {lifted or 'its block expired'}",
            )
        # Seats no block stands behind: the row was deleted by hand or by TTL, or a remover
        # stopped half-way.
        state = self.table.load_one(target)
        for seat in sorted(state.seats.values(), key=lambda s: s.index):
            if not (seat.releasing or state.is_orphan(seat)):
                continue
            if (number := self.release(seat)) is not None:
                out.entry(
                    "removedUnrecorded",
                    target,
                    seat.cidr,
                    number,
                    f"Removed rule {number} ({seat.cidr}) from {target}: no unexpired block "
                    "is recorded for it",
                )
        # Over CAPACITY: it was lowered since the seats were taken. Each round frees a seat.
        evicted: list[Eviction] = []
        for _ in range(len(state.seats)):
            state = self.table.load_one(target)
            if len(state.seats) <= self.config.capacity:
                break
            try:
                self.make_room(target, self._read(target), state, frozenset(), evicted)
            except _Restart:
                continue
            except (_Conflict, _NoRoom):
                break
        out.evictions(evicted)
        # Recorded, unexpired blocks without their entry (deleted by hand, or a writer
        # stopped half-way): re-create them.
        acl = self._read(target)
        state = self.table.load_one(target)
        for row in sorted(state.rows.values(), key=lambda r: r.cidr):
            if row.expires_at <= now or self.in_place(row, acl, state):
                continue
            evicted = []
            try:
                placement = self.place(
                    target, row.cidr, keep=frozenset({row.cidr}), evicted=evicted
                )
            except (_NoRoom, _AclFull) as exc:
                self.withdraw(target, row.cidr, self.table.load_one(target))
                line = f"Dropped the block of {row.cidr} in {target}: {exc}"
                out.entry("dropped", target, row.cidr, None, line)
                continue
            except PlacementError as exc:
                out.entry("failed", target, row.cidr, None, f"Could not restore {row.cidr}: {exc}")
                continue
            finally:
                out.evictions(evicted)
            if placement.created and placement.rule_number is not None:
                out.entry(
                    "restored",
                    target,
                    row.cidr,
                    placement.rule_number,
                    f"Re-created rule {placement.rule_number} for {row.cidr} in {target}: its "
                    "block is recorded but the entry was missing",
                )
        # Entries in the range that neither a seat nor a row proves ours: reported by
        # every sweep and never touched, except one of exactly our form left unrecorded
        # for ORPHAN_GRACE_SECONDS, which is ours whose record was lost.
        acl = self._read(target)
        state = self.table.load_one(target)
        for entry in acl.in_range(target, numbers):
            if state.owns(entry):
                continue
            if not entry.has_our_form:
                out.foreign(target, entry)
                continue
            since = self.table.orphan_since(target, entry, now)
            if now < since + ORPHAN_GRACE_SECONDS:
                out.foreign(target, entry, remove_after=since + ORPHAN_GRACE_SECONDS)
                continue
            if self._delete_if_denies(target, entry.rule_number, entry.cidr):
                self.table.forget_orphan(target, entry)
                out.entry(
                    "removedOrphan",
                    target,
                    entry.cidr,
                    entry.rule_number,
                    f"Removed rule {entry.rule_number} (deny {entry.cidr}) from {target}: it "
                    "is exactly a deny this remediator writes, inside its range, and no block "
                    f"has been recorded for it since {iso(since)}",
                )


# --------------------------------------------------------------------------- reports


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _acl_arn(acl: Acl, region: str) -> str:
    return f"arn:{_partition(region)}:ec2:{region}:{acl.owner}:network-acl/{acl.id}"


def _eviction_line(eviction: Eviction, config: Config) -> str:
    why = (
        "no block was recorded for it"
        if eviction.expires_at is None
        else f"it was due to expire first ({iso(eviction.expires_at)})"
    )
    return (
        f"Evicted {eviction.cidr} (rule {eviction.rule_number}) from {eviction.target} to stay "
        f"within CAPACITY {config.capacity} and the range {config.range_text}: {why}"
    )


def _eviction_result(eviction: Eviction) -> dict[str, Any]:
    return {
        "address": eviction.cidr,
        "networkAclId": eviction.target.nacl_id,
        "direction": eviction.target.direction,
        "ruleNumber": eviction.rule_number,
    }


@dataclass(frozen=True, slots=True)
class Blocked:
    target: Target
    cidr: str
    rule_number: int
    expires_at: int
    created: bool


@dataclass
class _Outcome:
    blocked: list[Blocked] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    evicted: list[Eviction] = field(default_factory=list)
    acl_arns: list[str] = field(default_factory=list)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "status": "processed",
            **extra,
            "blocked": [
                {
                    "address": b.cidr,
                    "networkAclId": b.target.nacl_id,
                    "direction": b.target.direction,
                    "ruleNumber": b.rule_number,
                    "expiresAt": iso(b.expires_at),
                }
                for b in self.blocked
            ],
            "rejected": [{"address": a, "reason": r} for a, r in self.rejected],
            "evicted": [_eviction_result(e) for e in self.evicted],
        }

    def actions(self, config: Config) -> list[str]:
        lines = [
            f"Denied {b.cidr} in {b.target} as rule {b.rule_number} until {iso(b.expires_at)}"
            if b.created
            else f"{b.cidr} was already denied in {b.target} as rule {b.rule_number}; "
            f"blocked until {iso(b.expires_at)}"
            for b in self.blocked
        ]
        lines += [f"Did not block {address}: {reason}" for address, reason in self.rejected]
        lines += [_eviction_line(e, config) for e in self.evicted]
        return lines

    @property
    def addresses_blocked(self) -> int:
        return len({b.cidr for b in self.blocked})


def _publish(config: Config, clock: Clock, **fields: Any) -> bool:
    if not report.wanted(config.notify_topic_arn):
        return False
    message = report.remediation_report(
        function=FUNCTION_NAME, now=datetime.fromtimestamp(clock.now(), UTC), **fields
    )
    report.publish(config.notify_topic_arn, message)
    return True


# --------------------------------------------------------------------------- operations


def _directions_by_address(
    config: Config,
    candidates: Sequence[tuple[addresses.IPAddress, Role]],
    outcome: _Outcome,
) -> dict[str, list[str]]:
    """The addresses to deny per direction: an inbound attacker in every configured
    direction (ingress, and egress too when enabled), an outbound malicious destination at
    the egress side only, and only when egress is enabled."""
    by_direction: dict[str, list[str]] = {direction: [] for direction in config.directions}
    for host, role in candidates:
        decision = addresses.classify(host, config.allowlist)
        if not decision.allowed:
            outcome.rejected.append((str(host), decision.reason))
            continue
        if role is Role.INBOUND_ATTACKER:
            directions: Sequence[str] = config.directions
        elif "egress" in config.directions:
            directions = ("egress",)
        else:
            outcome.rejected.append((str(host), EGRESS_DISABLED))
            continue
        for direction in directions:
            by_direction[direction].append(addresses.canonical_cidr(host))
    cap = config.capacity
    over: list[str] = []
    for direction, found in by_direction.items():
        cidrs = _dedupe(found)
        over += cidrs[cap:]
        by_direction[direction] = cidrs[:cap]
    outcome.rejected.extend(
        (cidr, f"one request may block at most {cap} addresses per network ACL (CAPACITY)")
        for cidr in _dedupe(over)
    )
    return {direction: cidrs for direction, cidrs in by_direction.items() if cidrs}


def _block(
    blocker: Blocker,
    nacl_ids: Sequence[str],
    candidates: Sequence[tuple[addresses.IPAddress, Role]],
    *,
    ttl_seconds: int,
    reason: str,
    finding_ids: Sequence[str],
    region: str,
    outcome: _Outcome,
) -> None:
    now = int(blocker.clock.now())
    by_direction = _directions_by_address(blocker.config, candidates, outcome)
    if not by_direction:
        return
    for nacl_id in nacl_ids:
        acl = blocker.acls.read(nacl_id)
        if acl is None:
            outcome.rejected.extend(
                (cidr, f"network ACL {nacl_id} does not exist")
                for cidr in _dedupe(c for cidrs in by_direction.values() for c in cidrs)
            )
            continue
        outcome.acl_arns.append(_acl_arn(acl, region))
        for direction, cidrs in by_direction.items():
            target = Target(nacl_id, direction)
            keep = frozenset(cidrs)
            for cidr in cidrs:
                expires_at = blocker.table.upsert(
                    target,
                    cidr,
                    expires_at=now + ttl_seconds,
                    reason=reason,
                    finding_ids=finding_ids,
                    now=now,
                )
                try:
                    placement = blocker.place(target, cidr, keep=keep, evicted=outcome.evicted)
                except (_NoRoom, _AclFull) as exc:
                    blocker.withdraw(target, cidr, blocker.table.load_one(target))
                    outcome.rejected.append((cidr, f"{target}: {exc}"))
                    continue
                except _AclGone:
                    outcome.rejected.append((cidr, f"network ACL {nacl_id} was deleted"))
                    continue
                if placement.rule_number is None:
                    outcome.rejected.append(
                        (cidr, f"{target}: withdrawn by a concurrent unblock or eviction")
                    )
                    continue
                outcome.blocked.append(
                    Blocked(target, cidr, placement.rule_number, expires_at, placement.created)
                )


def _target_acls(blocker: Blocker, findings: Sequence[Finding]) -> tuple[list[str], str | None]:
    """``NACL_IDS``, or else the ACLs of the findings' subnets (and why there are none)."""
    if blocker.config.nacl_ids:
        return list(blocker.config.nacl_ids), None
    subnets = _dedupe(s for finding in findings for s in finding.subnets)
    nacl_ids = blocker.acls.for_subnets(subnets)
    if nacl_ids:
        return nacl_ids, None
    return [], f"no network ACL is associated with subnet(s) {', '.join(subnets)} here"


def apply(
    findings: Sequence[Finding], origin: Origin, config: Config, clock: Clock
) -> dict[str, Any]:
    """Deny the addresses of decided findings, each on the side its role calls for."""
    batch = Batch.of(findings)
    outcome = _Outcome(rejected=list(batch.rejected))
    candidates, finding_ids = batch.candidates, batch.finding_ids
    if not candidates and not outcome.rejected:
        logger.info("nothing to block in the finding(s)", extra=origin.ids)
        return outcome.result(**origin.ids, networkAcls=[], notified=False)
    blocker = Blocker(config, clock)
    nacl_ids, no_acl = _target_acls(blocker, findings)
    if no_acl is not None:
        logger.warning("finding rejected", extra={**origin.ids, "reason": no_acl})
        return {"status": "rejected", **origin.ids, "reason": no_acl}
    _block(
        blocker,
        nacl_ids,
        candidates,
        ttl_seconds=config.block_ttl_seconds,
        reason=origin.reason,
        finding_ids=finding_ids,
        region=origin.region,
        outcome=outcome,
    )
    severity, types = batch.severity, batch.types
    notified = _publish(
        config,
        clock,
        title=f"Denied {outcome.addresses_blocked} address(es) in network ACLs: {types}",
        severity=report_severity(severity),
        summary=(
            f"{origin.reason} (severity {severity}) named {len(candidates)} remote "
            f"address(es): {outcome.addresses_blocked} denied in {', '.join(nacl_ids)} for "
            f"{config.block_ttl_seconds} s, {len(outcome.rejected)} rejection(s), "
            f"{len(outcome.evicted)} eviction(s)."
        ),
        actions=outcome.actions(config),
        account=origin.account,
        region=origin.region,
        resources=[*outcome.acl_arns, *(f.arn for f in findings if f.arn)],
        finding_id=finding_ids[0] if len(finding_ids) == 1 else None,
    )
    logger.info(
        "finding(s) processed",
        extra={**origin.ids, "blocked": len(outcome.blocked), "rejected": len(outcome.rejected)},
    )
    return outcome.result(**origin.ids, networkAcls=nacl_ids, notified=notified)


def _no_target(finding: Finding, config: Config) -> str | None:
    if config.nacl_ids or finding.subnets:
        return None
    return (
        "no target network ACL: NACL_IDS is empty and the finding names no subnet "
        "(resource.instanceDetails.networkInterfaces[].subnetId)"
    )


def handle_finding(
    event: GuardDutyFindingEvent,
    config: Config,
    clock: Clock = SYSTEM_CLOCK,
    lambda_context: LambdaContext | None = None,
) -> dict[str, Any]:
    """Deny the addresses of a catalog finding at or above the threshold.

    Target ACLs: ``NACL_IDS``; when it is empty, the ACLs of the subnets of the finding's
    instance (``resource.instanceDetails.networkInterfaces[].subnetId``). The rows are
    idempotent on their own too (keyed by address), so even a replay outside the
    idempotency window creates no second entry.
    """
    return handle_guardduty(
        event,
        config,
        clock,
        apply=apply,
        logger=logger,
        lambda_context=lambda_context,
        subnets=finding_subnets(event.detail.resource),
        refuse=lambda finding: _no_target(finding, config),
    )


def _parse_hosts(texts: Sequence[str], outcome: _Outcome) -> list[addresses.IPAddress]:
    hosts: list[addresses.IPAddress] = []
    for text in texts:
        try:
            hosts.append(addresses.parse_host(text))
        except ValueError as exc:
            outcome.rejected.append((text, str(exc)))
    return hosts


def block(
    request: BlockRequest, config: Config, clock: Clock, *, account: str, region: str
) -> dict[str, Any]:
    """An operator's block into ``NACL_IDS``: same rules as findings."""
    if not config.nacl_ids:
        reason = (
            "no target network ACL: NACL_IDS is empty, so only findings (through their "
            "instance's subnet) can be blocked"
        )
        logger.warning("request rejected", extra={"reason": reason})
        return {"status": "rejected", "action": "block", "reason": reason}
    outcome = _Outcome()
    hosts = _parse_hosts(request.addresses, outcome)
    ttl = request.ttl_seconds or config.block_ttl_seconds
    _block(
        Blocker(config, clock),
        config.nacl_ids,
        [(host, Role.INBOUND_ATTACKER) for host in hosts],
        ttl_seconds=ttl,
        reason=request.reason,
        finding_ids=(),
        region=region,
        outcome=outcome,
    )
    notified = _publish(
        config,
        clock,
        title=f"Denied {outcome.addresses_blocked} address(es) in network ACLs on request",
        severity="INFO",
        summary=(
            f"Manual block ({request.reason}): {outcome.addresses_blocked} denied for "
            f"{ttl} s, {len(outcome.rejected)} rejection(s), "
            f"{len(outcome.evicted)} eviction(s)."
        ),
        actions=outcome.actions(config),
        account=account,
        region=region,
        resources=outcome.acl_arns,
    )
    return outcome.result(action="block", networkAcls=list(config.nacl_ids), notified=notified)


def unblock(
    request: UnblockRequest, config: Config, clock: Clock, *, account: str, region: str
) -> dict[str, Any]:
    """Remove the blocks of the given addresses wherever they were recorded."""
    outcome = _Outcome()
    hosts = _parse_hosts(request.addresses, outcome)
    cidrs = _dedupe(addresses.canonical_cidr(host) for host in hosts)
    blocker = Blocker(config, clock)
    unblocked: list[dict[str, Any]] = []
    actions: list[str] = []
    for target, state in sorted(blocker.table.load().items()):
        for cidr in cidrs:
            if cidr not in state.rows and not state.seats_of(cidr):
                continue
            removed = blocker.withdraw(target, cidr, state)
            unblocked.append(
                {
                    "address": cidr,
                    "networkAclId": target.nacl_id,
                    "direction": target.direction,
                    "ruleNumbers": removed,
                }
            )
            rules = f" (removed rule {', '.join(map(str, removed))})" if removed else ""
            actions.append(f"Unblocked {cidr} in {target}{rules}")
    found = {item["address"] for item in unblocked}
    not_blocked = [cidr for cidr in cidrs if cidr not in found]
    actions += [f"{cidr} was not blocked" for cidr in not_blocked]
    actions += [f"Did not unblock {address}: {reason}" for address, reason in outcome.rejected]
    notified = _publish(
        config,
        clock,
        title=f"Unblocked {len(found)} address(es) in network ACLs on request",
        severity="INFO",
        summary=f"Manual unblock ({request.reason}): {len(found)} unblocked.",
        actions=actions,
        account=account,
        region=region,
    )
    return {
        "status": "processed",
        "action": "unblock",
        "unblocked": unblocked,
        "notBlocked": not_blocked,
        "rejected": [{"address": a, "reason": r} for a, r in outcome.rejected],
        "notified": notified,
    }


@dataclass
class _Sweep:
    """What one sweep did and saw, as result fields and report lines together."""

    config: Config
    result: dict[str, list[Any]] = field(
        default_factory=lambda: {
            key: []
            for key in (
                "expired",
                "lifted",
                "removedUnrecorded",
                "removedOrphan",
                "evicted",
                "restored",
                "dropped",
                "failed",
                "foreign",
                "missingNetworkAcls",
            )
        }
    )
    lines: list[str] = field(default_factory=list)

    def entry(self, key: str, target: Target, cidr: str, number: int | None, line: str) -> None:
        self.result[key].append(
            {
                "address": cidr,
                "networkAclId": target.nacl_id,
                "direction": target.direction,
                "ruleNumber": number,
            }
        )
        self.lines.append(line)

    def evictions(self, evicted: Sequence[Eviction]) -> None:
        self.result["evicted"] += [_eviction_result(e) for e in evicted]
        self.lines += [_eviction_line(e, self.config) for e in evicted]

    def foreign(self, target: Target, entry: Entry, remove_after: int | None = None) -> None:
        self.result["foreign"].append(
            {
                "networkAclId": target.nacl_id,
                "direction": target.direction,
                "ruleNumber": entry.rule_number,
                "cidr": entry.cidr,
                "ruleAction": entry.action,
                **({"removeAfter": iso(remove_after)} if remove_after is not None else {}),
            }
        )
        self.lines.append(
            f"Left rule {entry.rule_number} ({entry.action} {entry.cidr or 'without a CIDR'}) "
            f"in {target} alone: it is inside the reserved range {self.config.range_text} but "
            "this remediator did not create it, so that number is not available to it"
        )


def _sweep_acl(
    blocker: Blocker, nacl_id: str, targets: Iterable[Target], now: int, out: _Sweep
) -> Acl | None:
    """Sweep every direction of one ACL; ``None`` if it does not exist (any more)."""
    acl = blocker.acls.read(nacl_id)
    if acl is None:
        return None
    try:
        for target in targets:
            blocker.sweep_target(target, now, out)
    except _AclGone:
        return None  # deleted while being swept
    return acl


def sweep(config: Config, clock: Clock, *, account: str, region: str) -> dict[str, Any]:
    """Expire blocks and reconcile every ACL with the table, both ways, without halting.

    ACLs swept: ``NACL_IDS`` plus every ACL the table records blocks or seats for (with
    ``NACL_IDS`` empty, that is where findings put them).
    """
    now = int(clock.now())
    blocker = Blocker(config, clock)
    out = _Sweep(config)
    recorded = blocker.table.load()
    arns: list[str] = []
    for nacl_id in sorted(set(config.nacl_ids) | {t.nacl_id for t in recorded}):
        targets = sorted(
            {Target(nacl_id, d) for d in config.directions}
            | {t for t in recorded if t.nacl_id == nacl_id}
        )
        acl = _sweep_acl(blocker, nacl_id, targets, now, out)
        if acl is not None:
            arns.append(_acl_arn(acl, region))
            continue
        out.result["missingNetworkAcls"].append(nacl_id)
        dropped = blocker.table.drop_acl(nacl_id)
        listed = " (NACL_IDS lists it)" if nacl_id in config.nacl_ids else ""
        out.lines.append(
            f"Network ACL {nacl_id} does not exist{listed}: dropped {dropped} recorded "
            "block(s) for it"
        )
    result = out.result
    notified = bool(out.lines) and _publish(
        config,
        clock,
        title="Network ACL blocklist sweep",
        severity="INFO",
        summary=(
            f"{len(result['expired'])} expired, {len(result['lifted'])} lifted by the "
            f"allowlist, {len(result['removedUnrecorded'])} "
            f"unrecorded removed, {len(result['restored'])} re-created, "
            f"{len(result['evicted'])} evicted, {len(result['dropped'])} dropped, "
            f"{len(result['foreign'])} foreign entr(y/ies) left alone in the reserved range."
        ),
        actions=out.lines,
        account=account,
        region=region,
        resources=arns,
    )
    logger.info("sweep finished", extra={"lines": len(out.lines)})
    return {"status": "swept", **result, "notified": notified}
