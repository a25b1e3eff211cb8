"""Deny attacker addresses in network ACLs, expire the entries, never halt on drift.

Model. Network ACLs are small (20 entries per direction by default, 40 at most) and
ordered by rule number, so this remediator writes only inside a reserved, inclusive
rule-number range (``RULE_RANGE_START``..``RULE_RANGE_END``) and keeps at most
``CAPACITY`` entries per ACL and direction. Every entry is a DENY of one host (``/32``
through ``CidrBlock``, ``/128`` through ``Ipv6CidrBlock``) for all protocols.

Item layout in the state table (partition key ``pk``, TTL attribute ``expires_at``)::

    pk           "entry#<acl id>#<ingress|egress>#<cidr>"      one block (a *row*)
    nacl_id, direction, cidr
    expires_at   epoch seconds; only ever moves later (max of existing and new)
    rule_number  the entry's rule number, once placed
    first_seen, last_seen, hit_count, finding_ids (absent for manual), reason

    pk           "rule#<acl id>#<ingress|egress>#<rule number>"  one entry of ours (a *rule*)
    nacl_id, direction, rule_number, cidr

    pk           "lease#<acl id>"                               the ACL's writer, while held
    owner        the holder's token;  expires_at  when another writer may take it over

A rule item is the proof that an entry is ours. It has no ``expires_at`` on purpose:
DynamoDB TTL deletes expired rows lazily, and the rule item is what still proves the
left-behind entry ours so that a sweep removes it. It is written *before* the entry is
created and deleted only *after* the entry is seen gone, so at no moment is an entry of
ours unnamed. An entry in the range that neither a rule item nor a row names (number and
CIDR) is foreign: it is never changed or adopted, its number is never used, and every
sweep reports it. The same table holds Powertools idempotency records (``finding#...``)
and orphan sightings (``orphan#...``).

One writer per ACL. Every write to an ACL (and to its rows and rule items) happens while
holding the ACL's lease: a conditional PutItem (``attribute_not_exists(pk) OR expires_at <
:now``) with this invocation's token, released in a ``finally`` (conditional on the token)
and TTL-deleted should the holder die. The function's reserved concurrency is the first
guard; the lease makes the rest plain sequential code: read the ACL and the table, plan,
write. A writer that finds the lease held waits (short jittered backoff, bounded by the
Lambda's remaining time) and then raises :class:`LeaseBusy`, so Lambda retries the event.

A holder that outlives its lease (a pause longer than ``LEASE_SECONDS``) stays safe:
before each write it renews the lease conditionally on its token, and stops with
:class:`LeaseLost` once another writer holds it. The one write that can still land after
the takeover (the call in flight) meets the new holder's state: that holder counts the
rule item written first as taken, re-uses its number for the same address (so a create
in flight lands on the same entry: ``NetworkAclEntryAlreadyExists``, read back as done),
and the next sweep reconciles whatever is left, both ways.

Ambiguous answers. botocore retries a request whose connection dropped, and the retry of
a write that had landed answers as if someone else had got there first
(``NetworkAclEntryAlreadyExists``, ``ConditionalCheckFailedException``, a missing entry).
Each such answer is decided by reading back: the deny in place, the row gone, the lease
held with this token, the entry no longer there.

Drift. Each sweep reconciles the table and the ACLs both ways and carries on, whatever it
finds: expired rows (and rows the allowlist now covers) lose their entry; a rule item no
row stands behind loses its entry; blocks over ``CAPACITY`` are evicted; a recorded,
unexpired block whose entry is missing is re-created (on a new number when its old one is
taken); an ACL that no longer exists has its rows and rules dropped. Foreign entries are
reported and left alone, except one that is exactly a deny this remediator writes and has
stayed unrecorded for ``ORPHAN_GRACE_SECONDS``: ours whose record was lost, removed and
reported. ``DescribeNetworkAcls`` is eventually consistent, so an entry's absence or
presence is believed only after re-reading (:data:`VERIFY_READS`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Self

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import Field, ValidationInfo, field_validator, model_validator

from functions.common import addresses, aws, blocking, engine, intake
from functions.common import finding_catalog as catalog
from functions.common.blocking import SYSTEM_CLOCK, Clock  # noqa: F401  (callers use logic.X)

ConfigError = engine.ConfigError

FUNCTION_NAME = "nacl_blocker"
logger = Logger(service=FUNCTION_NAME, child=True)

ROW_PREFIX = "entry#"
RULE_PREFIX = "rule#"
LEASE_PREFIX = "lease#"
ORPHAN_PREFIX = "orphan#"
# An entry in the range that is exactly a deny this remediator writes, yet no row or rule
# item names, is ours whose record was lost (a delete decided on a stale read, items
# deleted by hand): reported by every sweep, and removed once it has been so this long.
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

# Under the lease nothing of ours races a placement; what is left is someone else's entry
# landing on the chosen number (and an eviction before a placement, one attempt each).
MAX_ATTEMPTS = 10
# Reads of the eventually consistent DescribeNetworkAcls before an entry's absence (before
# a delete) or presence (after one) is believed; with the backoff, under a second.
VERIFY_READS = 5
# How long a lease holds without renewal. The holder renews it before every write, so it
# must only outlast one API call (botocore's retries included); a holder that dies leaves
# the ACL blocked for at most this long.
LEASE_SECONDS = 30
# Waiting for a busy ACL: a holder keeps it for a few hundred milliseconds, so the waits
# stay short (full jitter up to this cap) and many; the Lambda's deadline bounds them.
LEASE_BACKOFF_CAP_SECONDS = 0.25
LEASE_ATTEMPTS = 200

# AWS answers InvalidNetworkAclID.NotFound; moto answers InvalidRouteTableID.NotFound. The
# request names one ACL, so either code means that ACL is gone.
_ACL_NOT_FOUND = frozenset({"InvalidNetworkAclID.NotFound", "InvalidRouteTableID.NotFound"})
# What botocore raises when a request may or may not have taken effect: a service error
# (possibly the answer to a retry of a request that landed), a connection that dropped or
# timed out, or an answer it could not parse.
_AMBIGUOUS = (ClientError, BotoCoreError, ResponseParserError)
_NACL_ID = re.compile(r"acl-[0-9a-f]{8,17}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
# AWS counts rules per ACL, direction and IP version (the default rule and the ACL's own
# rules included: 20 by default, 40 at most) and answers this when a create would exceed it.
# moto has no such quota.
ENTRY_LIMIT_EXCEEDED = "NetworkAclEntryLimitExceeded"


class PlacementError(RuntimeError):
    """An entry could not be placed within the retry budget; Lambda should retry."""


class LeaseBusy(RuntimeError):
    """Another invocation kept the ACL's lease for longer than this one could wait."""


class LeaseLost(RuntimeError):
    """This invocation's lease expired and another writer took it: stop writing."""


class _Conflict(Exception):
    """What this attempt read changed under it (someone else's entry); back off, re-plan."""


class _Restart(Exception):
    """This attempt made room itself; re-read and re-plan at once."""


class _NoRoom(Exception):
    """The range holds nothing this remediator may evict and no free rule number."""


class _AclGone(Exception):
    """The network ACL does not exist (any more)."""


class _AclFull(Exception):
    """AWS refused the entry: the ACL holds its quota of rules in that direction."""


# --------------------------------------------------------------------------- configuration


def _json_strings(name: str, raw: Any) -> Any:
    """A JSON list of strings from its variable (stripped); anything else as given."""
    if not isinstance(raw, str):
        return raw
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc.msg}") from None
    if not isinstance(decoded, list) or not all(isinstance(item, str) for item in decoded):
        raise ValueError(f"{name} must be a JSON list of strings, got {raw[:80]!r}")
    return tuple(item.strip() for item in decoded)


class Config(engine.Settings):
    rule_range_start: int = Field(alias="RULE_RANGE_START")
    rule_range_end: int = Field(alias="RULE_RANGE_END")
    nacl_ids: tuple[str, ...] = Field(default=(), alias="NACL_IDS")
    capacity: int = Field(default=10, alias="CAPACITY")
    directions: tuple[str, ...] = Field(default=("ingress",), alias="DIRECTIONS")

    @field_validator("nacl_ids", "directions", mode="before")
    @classmethod
    def _lists(cls, raw: Any, info: ValidationInfo) -> Any:
        return _json_strings(info.field_name.upper() if info.field_name else "", raw)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for nacl_id in self.nacl_ids:
            if not _NACL_ID.fullmatch(nacl_id):
                raise ValueError(f"NACL_IDS: {nacl_id!r} is not a network ACL id (acl-...)")
        if len(set(self.nacl_ids)) != len(self.nacl_ids):
            raise ValueError("NACL_IDS lists a network ACL twice")
        if not MIN_RULE_NUMBER <= self.rule_range_start <= MAX_RULE_NUMBER:
            raise ValueError(
                f"RULE_RANGE_START must be {MIN_RULE_NUMBER}..{MAX_RULE_NUMBER}, "
                f"got {self.rule_range_start}"
            )
        if not self.rule_range_start <= self.rule_range_end <= MAX_RULE_NUMBER:
            raise ValueError(
                f"RULE_RANGE_END must be {self.rule_range_start}..{MAX_RULE_NUMBER} "
                f"(RULE_RANGE_START..{MAX_RULE_NUMBER}), got {self.rule_range_end}"
            )
        if not 1 <= self.capacity <= MAX_CAPACITY:
            raise ValueError(f"CAPACITY must be 1..{MAX_CAPACITY}, got {self.capacity}")
        if (
            not self.directions
            or len(set(self.directions)) != len(self.directions)
            or not set(self.directions) <= set(DIRECTIONS)
        ):
            raise ValueError(
                f'DIRECTIONS must be ["ingress"] or ["ingress", "egress"], got {self.directions}'
            )
        return self

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
    """One direction of one network ACL: the unit that CAPACITY applies to."""

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
    rule_number: int | None


@dataclass
class TargetState:
    """The rows and rule items of one target, as read."""

    rows: dict[str, Row] = field(default_factory=dict)
    rules: dict[int, str] = field(default_factory=dict)  # rule number -> CIDR

    def numbers_of(self, cidr: str) -> list[int]:
        """Every number a rule item or the row names for ``cidr``, rule items first."""
        row = self.rows.get(cidr)
        named = [n for n, c in sorted(self.rules.items()) if c == cidr]
        return _dedupe([*named, *([row.rule_number] if row and row.rule_number else [])])

    def owns(self, entry: Entry) -> bool:
        """Is ``entry`` ours: does a rule item, or failing that a row, name it?"""
        if not entry.denies(entry.cidr):
            return False
        row = self.rows.get(entry.cidr)
        named_by_row = row is not None and row.rule_number == entry.rule_number
        return named_by_row or self.rules.get(entry.rule_number) == entry.cidr


# --------------------------------------------------------------------------- state table


def _row_key(target: Target, cidr: str) -> dict[str, Any]:
    return {"pk": {"S": f"{ROW_PREFIX}{target.key}#{cidr}"}}


def _rule_key(target: Target, rule_number: int) -> dict[str, Any]:
    return {"pk": {"S": f"{RULE_PREFIX}{target.key}#{rule_number}"}}


def _parse_item(item: Mapping[str, Any]) -> Row | tuple[Target, int, str] | None:
    """A row, or a rule item as (target, number, cidr); ``None`` (logged) for one edited
    out of shape."""
    pk = item["pk"]["S"]
    prefix = ROW_PREFIX if pk.startswith(ROW_PREFIX) else RULE_PREFIX
    try:
        nacl_id, direction, tail = pk.removeprefix(prefix).split("#", 2)
        if direction not in DIRECTIONS:
            raise ValueError(direction)
        target = Target(nacl_id, direction)
        if prefix == RULE_PREFIX:
            return target, int(tail), item["cidr"]["S"]
        number = item.get("rule_number")
        expires_at = int(item["expires_at"]["N"])
        return Row(target, tail, expires_at, int(number["N"]) if number else None)
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

    def _item(self, key: dict[str, Any]) -> dict[str, Any]:
        """The item now (strongly consistent); empty when there is none."""
        item: dict[str, Any] = self._db.get_item(
            TableName=self.name, Key=key, ConsistentRead=True
        ).get("Item", {})
        return item

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
        identity = {
            "nacl_id": {"S": target.nacl_id},
            "direction": {"S": target.direction},
            "cidr": {"S": cidr},
        }
        return engine.upsert_row(
            self._db,
            self.name,
            _row_key(target, cidr),
            identity,
            expires_at=expires_at,
            reason=reason,
            finding_ids=finding_ids,
            now=now,
        )

    def load(self, target: Target | None = None) -> dict[Target, TargetState]:
        """Rows and rule items (strongly consistent), of one target or of all, by target."""
        scope = f"{target.key}#" if target else ""
        request: dict[str, Any] = {
            "TableName": self.name,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :rows) OR begins_with(pk, :rules)",
            "ExpressionAttributeValues": {
                ":rows": {"S": f"{ROW_PREFIX}{scope}"},
                ":rules": {"S": f"{RULE_PREFIX}{scope}"},
            },
        }
        states: dict[Target, TargetState] = {}
        while True:
            page = self._db.scan(**request)
            for item in page.get("Items", []):
                parsed = _parse_item(item)
                if isinstance(parsed, Row):
                    states.setdefault(parsed.target, TargetState()).rows[parsed.cidr] = parsed
                elif parsed is not None:
                    where, number, cidr = parsed
                    states.setdefault(where, TargetState()).rules[number] = cidr
            if "LastEvaluatedKey" not in page:
                return states
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def load_one(self, target: Target) -> TargetState:
        return self.load(target).get(target) or TargetState()

    def record_number(self, target: Target, cidr: str, rule_number: int) -> None:
        """Write the entry's number on the row (for people, and a second proof)."""
        self._conditional(
            self._db.update_item,
            Key=_row_key(target, cidr),
            UpdateExpression="SET #number = :number",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#number": "rule_number"},
            ExpressionAttributeValues={":number": {"N": str(rule_number)}},
        )

    def put_rule(self, target: Target, rule_number: int, cidr: str) -> None:
        self._db.put_item(
            TableName=self.name,
            Item={
                **_rule_key(target, rule_number),
                "nacl_id": {"S": target.nacl_id},
                "direction": {"S": target.direction},
                "rule_number": {"N": str(rule_number)},
                "cidr": {"S": cidr},
            },
        )

    def forget_rule(self, target: Target, rule_number: int, cidr: str) -> None:
        """Drop the rule item of ``rule_number`` if it names ``cidr`` (and no other)."""
        self._conditional(
            self._db.delete_item,
            Key=_rule_key(target, rule_number),
            ConditionExpression="#cidr = :cidr",
            ExpressionAttributeNames={"#cidr": "cidr"},
            ExpressionAttributeValues={":cidr": {"S": cidr}},
        )

    def delete_row_if_unchanged(self, row: Row) -> bool:
        """Delete the row as read; ``True`` once it is gone, ``False`` while it stands
        re-blocked (its expiry moved since it was read).

        A failed condition on a row that no longer exists is not a re-block: the row was
        deleted, by this very request, whose first attempt succeeded and whose response
        was lost before botocore retried it.
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
        return int(self._item(key).get("first_seen", {}).get("N", now))

    def forget_orphan(self, target: Target, entry: Entry) -> None:
        key = {"pk": {"S": f"{ORPHAN_PREFIX}{target.key}#{entry.rule_number}#{entry.cidr}"}}
        self._db.delete_item(TableName=self.name, Key=key)

    def drop_acl(self, nacl_id: str) -> int:
        """Delete every row and rule item of an ACL that no longer exists; rows dropped."""
        dropped = 0
        for target, state in self.load().items():
            if target.nacl_id != nacl_id:
                continue
            for cidr in state.rows:
                dropped += self.delete_row(target, cidr)
            for number in state.rules:
                self._db.delete_item(TableName=self.name, Key=_rule_key(target, number))
        return dropped

    # ----------------------------------------------------------------------- the lease

    def take_lease(self, nacl_id: str, token: str, now: int) -> bool:
        """Hold the ACL's lease with ``token``: ``True`` if it is ours now."""
        key = {"pk": {"S": f"{LEASE_PREFIX}{nacl_id}"}}
        try:
            self._db.put_item(
                TableName=self.name,
                Item={**key, "owner": {"S": token}, "expires_at": {"N": str(now + LEASE_SECONDS)}},
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not aws.is_conditional_failure(exc):
                raise
            # The lease as it stands: this very put, retried after its answer was lost,
            # finds its own token there.
            return bool(exc.response.get("Item", {}).get("owner") == {"S": token})
        return True

    def renew_lease(self, nacl_id: str, token: str, now: int) -> bool:
        """Extend the lease if ``token`` still holds it; ``False`` once another does."""
        return self._conditional(
            self._db.update_item,
            Key={"pk": {"S": f"{LEASE_PREFIX}{nacl_id}"}},
            UpdateExpression="SET expires_at = :until",
            ConditionExpression="#owner = :token",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":token": {"S": token},
                ":until": {"N": str(now + LEASE_SECONDS)},
            },
        )

    def release_lease(self, nacl_id: str, token: str) -> None:
        """Give the lease back; a failed condition means it was no longer ours (taken
        over, or released by this request's own first attempt)."""
        self._conditional(
            self._db.delete_item,
            Key={"pk": {"S": f"{LEASE_PREFIX}{nacl_id}"}},
            ConditionExpression="#owner = :token",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":token": {"S": token}},
        )


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

        An error does not prove the entry absent: ``NetworkAclEntryAlreadyExists`` for an
        entry that is exactly this deny is this very call retried by botocore after a
        lost response (or the same deny created by a holder that outlived its lease), and
        a dropped connection may follow a create that landed. A fresh read decides.
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

        A delete whose response was lost is retried by botocore and finds nothing: AWS
        answers ``InvalidNetworkAclEntry.NotFound``; moto an HTML 500 botocore cannot
        parse. Whatever the error, a fresh read decides: the entry gone is success, the
        entry still there re-raises.
        """
        try:
            self._ec2.delete_network_acl_entry(
                NetworkAclId=target.nacl_id, RuleNumber=rule_number, Egress=target.egress
            )
        except _AMBIGUOUS:
            acl = self.read(target.nacl_id)
            if acl is not None and acl.entry(target, rule_number) is not None:
                raise


# --------------------------------------------------------------------------- the writer


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a block's entry is; ``rule_number`` ``None``: its row was withdrawn."""

    rule_number: int | None
    created: bool


@dataclass(frozen=True, slots=True)
class Eviction:
    target: Target
    cidr: str
    rule_number: int | None
    expires_at: int | None  # None: no block was recorded for it


class Blocker:
    """Places, evicts, removes and sweeps the entries of one configuration.

    Every write happens inside :meth:`holding` the ACL's lease, and is preceded by
    :meth:`_own` (renew the lease, or stop with :class:`LeaseLost`).
    """

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.table = StateTable(config.state_table)
        self.acls = NetworkAcls()
        self._held: dict[str, str] = {}  # nacl id -> lease token

    @contextmanager
    def holding(self, nacl_id: str) -> Iterator[None]:
        """Hold the lease of ``nacl_id`` for the block; released however it ends."""
        token = uuid.uuid4().hex
        attempts = blocking.Attempts(self.clock, LEASE_ATTEMPTS, cap=LEASE_BACKOFF_CAP_SECONDS)
        for attempt in attempts:
            if self.table.take_lease(nacl_id, token, int(self.clock.now())):
                break
            if not attempts.wait(attempt):
                raise LeaseBusy(
                    f"network ACL {nacl_id} is being written by another invocation "
                    f"{attempts.summary()}; Lambda retries the event"
                )
        self._held[nacl_id] = token
        try:
            yield
        finally:
            del self._held[nacl_id]
            try:
                self.table.release_lease(nacl_id, token)
            except (ClientError, BotoCoreError):
                logger.warning("lease not released; it expires", extra={"nacl_id": nacl_id})

    def _own(self, target: Target) -> None:
        """Check (and renew) this invocation's lease on ``target``'s ACL before a write."""
        token = self._held.get(target.nacl_id)
        if token is None or not self.table.renew_lease(
            target.nacl_id, token, int(self.clock.now())
        ):
            raise LeaseLost(
                f"the lease of {target.nacl_id} expired and another writer holds it; "
                "nothing more is written, Lambda retries the event and the sweep reconciles"
            )

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
        attempts = blocking.Attempts(self.clock, VERIFY_READS)
        entry: Entry | None = None
        for attempt in attempts:
            acl = self.acls.read(target.nacl_id)
            entry = acl.entry(target, rule_number) if acl else None
            if acl is None or settled(entry) or not attempts.wait(attempt):
                break
        return entry

    def _remove_entry(self, target: Target, rule_number: int, cidr: str) -> bool | None:
        """Remove our deny of ``cidr`` at ``rule_number``, then its rule item.

        ``True``: removed and seen gone; ``False``: no such deny, after reading until it
        showed or the reads ran out; ``None``: deleted but still shown when the reads ran
        out, so the rule item stays and the next sweep finishes the job.
        """
        entry = self._settled_entry(target, rule_number, lambda e: e is not None)
        removed = entry is not None and entry.denies(cidr)
        if removed:
            self._own(target)
            self.acls.delete(target, rule_number)
            if self._settled_entry(target, rule_number, lambda e: e is None) is not None:
                logger.warning(
                    "deleted entry still shown; the next sweep checks again",
                    extra={"target": str(target), "rule_number": rule_number},
                )
                return None
        self._own(target)
        self.table.forget_rule(target, rule_number, cidr)
        return removed

    def remove_entries(self, target: Target, cidr: str, state: TargetState) -> list[int]:
        """Remove every entry of ``cidr`` that a rule item or its row names; the numbers
        removed. Call it once the row is gone."""
        return [n for n in state.numbers_of(cidr) if self._remove_entry(target, n, cidr)]

    def withdraw(self, target: Target, cidr: str, state: TargetState) -> list[int]:
        """Drop the block of ``cidr`` (row, rule items, entries); the numbers removed."""
        self._own(target)
        self.table.delete_row(target, cidr)
        return self.remove_entries(target, cidr, state)

    def record(self, target: Target, cidr: str, job: engine.Job) -> int:
        """Record (or extend) the block of ``cidr``; its expiry."""
        self._own(target)
        now = int(self.clock.now())
        return self.table.upsert(
            target,
            cidr,
            expires_at=now + job.ttl_seconds,
            reason=job.reason,
            finding_ids=job.finding_ids,
            now=now,
        )

    def place(
        self, target: Target, cidr: str, *, keep: frozenset[str], evicted: list[Eviction]
    ) -> Placement:
        """Make the recorded block of ``cidr`` an entry in the reserved range.

        ``keep``: addresses of the same request, never evicted to make room for each other.
        Raises :class:`_NoRoom` when nothing may be evicted and no number is free,
        :class:`_AclFull`, :class:`_AclGone`, or :class:`PlacementError` when the attempts
        run out (someone else's entries keep landing on the numbers chosen).
        """
        last_error = ""
        attempts = blocking.Attempts(self.clock, MAX_ATTEMPTS)
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
        acl = self._read(target)
        state = self.table.load_one(target)
        row = state.rows.get(cidr)
        if row is None:
            return Placement(None, created=False)
        mine = state.numbers_of(cidr)
        for number in mine:
            entry = acl.entry(target, number)
            if entry is not None and entry.denies(cidr):
                # In place; a rule item lost by hand is written again (taken back).
                return self._placed(target, row, state, number, created=False)
        held = {n: c for n, c in state.rules.items() if c != cidr}
        if len(held) >= self.config.capacity:
            self.evict(target, acl, state, keep, evicted)
        taken = {e.rule_number for e in acl.in_range(target, self.config.rule_numbers)}
        taken |= held.keys()
        # A number a rule item already names for this address comes first: a create still
        # in flight from a holder that outlived its lease then lands on the same entry.
        free = [n for n in mine if n in self.config.rule_numbers and n not in taken]
        free += [n for n in self.config.rule_numbers if n not in taken]
        if not free:
            self.evict(target, acl, state, keep, evicted)
        number = free[0]
        if state.rules.get(number) != cidr:
            self._own(target)
            self.table.put_rule(target, number, cidr)
        self._own(target)
        try:
            created = self.acls.create_deny(target, number, cidr)
        except _AclFull:
            self.table.forget_rule(target, number, cidr)
            raise
        if not created:
            self._own(target)
            self.table.forget_rule(target, number, cidr)
            raise _Conflict(f"rule {number} was taken")
        return self._placed(target, row, state, number, created=True)

    def _placed(
        self, target: Target, row: Row, state: TargetState, number: int, *, created: bool
    ) -> Placement:
        if state.rules.get(number) != row.cidr:
            self._own(target)
            self.table.put_rule(target, number, row.cidr)
        if row.rule_number != number:
            self._own(target)
            self.table.record_number(target, row.cidr, number)
        return Placement(number, created=created)

    def evict(
        self,
        target: Target,
        acl: Acl,
        state: TargetState,
        keep: frozenset[str],
        evicted: list[Eviction],
    ) -> None:
        """Remove the entry of the block expiring first, then restart the placement.

        An entry no row stands behind has no recorded expiry, so it goes first.
        """
        candidates = [(n, c) for n, c in state.rules.items() if c not in keep]
        if not candidates:
            foreign = [
                e for e in acl.in_range(target, self.config.rule_numbers) if not state.owns(e)
            ]
            raise _NoRoom(
                f"no free rule number in the reserved range {self.config.range_text} and "
                f"nothing this remediator may evict ({len(foreign)} number(s) there are held "
                "by entries it did not create)"
            )

        def order(candidate: tuple[int, str]) -> tuple[int, int]:
            row = state.rows.get(candidate[1])
            return (row.expires_at if row else -1, candidate[0])

        number, cidr = min(candidates, key=order)
        row = state.rows.get(cidr)
        if row is not None:
            self._own(target)
            if not self.table.delete_row_if_unchanged(row):
                raise _Conflict(f"{cidr} was re-blocked while being evicted")
        self.remove_entries(target, cidr, state)
        evicted.append(Eviction(target, cidr, number, row.expires_at if row else None))
        raise _Restart

    def in_place(self, row: Row, acl: Acl, state: TargetState) -> bool:
        for number in state.numbers_of(row.cidr):
            entry = acl.entry(row.target, number)
            if entry is not None and entry.denies(row.cidr) and state.rules.get(number) == row.cidr:
                return True
        return False

    def sweep_target(self, target: Target, now: int, out: _Sweep) -> None:
        """Reconcile one ACL direction with the table, both ways; report what it saw."""
        # Expired blocks. DynamoDB TTL deletes rows lazily (typically within days), so
        # expiry is decided here from expires_at, never from a row's absence alone.
        # Blocks the allowlist covers now: it changed since they were written, and no
        # block may outlive that (nor be re-created below).
        state = self.table.load_one(target)
        for row in sorted(state.rows.values(), key=lambda r: r.cidr):
            lifted = (
                None
                if row.expires_at <= now
                else blocking.lift_reason(row.cidr, self.config.allowlist)
            )
            if row.expires_at > now and lifted is None:
                continue
            self._own(target)
            if not self.table.delete_row_if_unchanged(row):
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
        # Rule items no block stands behind: the row was deleted by hand or by TTL, or a
        # remover stopped half-way.
        state = self.table.load_one(target)
        for number, cidr in sorted(state.rules.items()):
            if cidr in state.rows or not self._remove_entry(target, number, cidr):
                continue
            out.entry(
                "removedUnrecorded",
                target,
                cidr,
                number,
                f"Removed rule {number} ({cidr}) from {target}: no unexpired block is "
                "recorded for it",
            )
        # Over CAPACITY: it was lowered since the entries were placed.
        evicted: list[Eviction] = []
        for _ in range(len(state.rules)):
            state = self.table.load_one(target)
            if len(state.rules) <= self.config.capacity:
                break
            try:
                self.evict(target, self._read(target), state, frozenset(), evicted)
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
        # Entries in the range that neither a rule item nor a row proves ours: reported by
        # every sweep and never touched, except one of exactly our form left unrecorded
        # for ORPHAN_GRACE_SECONDS, which is ours whose record was lost.
        acl = self._read(target)
        state = self.table.load_one(target)
        for entry in acl.in_range(target, self.config.rule_numbers):
            if state.owns(entry):
                continue
            if not entry.has_our_form:
                out.foreign(target, entry)
                continue
            since = self.table.orphan_since(target, entry, now)
            if now < since + ORPHAN_GRACE_SECONDS:
                out.foreign(target, entry, remove_after=since + ORPHAN_GRACE_SECONDS)
                continue
            if self._remove_entry(target, entry.rule_number, entry.cidr):
                self.table.forget_orphan(target, entry)
                out.entry(
                    "removedOrphan",
                    target,
                    entry.cidr,
                    entry.rule_number,
                    f"Removed rule {entry.rule_number} (deny {entry.cidr}) from {target}: it "
                    "is exactly a deny this remediator writes, inside its range, and no block "
                    f"has been recorded for it since {blocking.iso(since)}",
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
        else f"it was due to expire first ({blocking.iso(eviction.expires_at)})"
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
class _Outcome(engine.Tally):
    blocked: list[Blocked] = field(default_factory=list)
    evicted: list[Eviction] = field(default_factory=list)

    def result(self, **extra: Any) -> dict[str, Any]:
        return self.fields(
            [
                {
                    "address": b.cidr,
                    "networkAclId": b.target.nacl_id,
                    "direction": b.target.direction,
                    "ruleNumber": b.rule_number,
                    "expiresAt": blocking.iso(b.expires_at),
                }
                for b in self.blocked
            ],
            [_eviction_result(e) for e in self.evicted],
            **extra,
        )

    def actions(self, config: Config) -> list[str]:
        lines = [
            f"Denied {b.cidr} in {b.target} as rule {b.rule_number} until "
            f"{blocking.iso(b.expires_at)}"
            if b.created
            else f"{b.cidr} was already denied in {b.target} as rule {b.rule_number}; "
            f"blocked until {blocking.iso(b.expires_at)}"
            for b in self.blocked
        ]
        lines += [f"Did not block {address}: {reason}" for address, reason in self.rejected]
        lines += [_eviction_line(e, config) for e in self.evicted]
        return lines

    @property
    def addresses_blocked(self) -> int:
        return len({b.cidr for b in self.blocked})

    def tally(self, ttl_seconds: int) -> str:
        return (
            f"{self.addresses_blocked} denied for {ttl_seconds} s, {len(self.rejected)} "
            f"rejection(s), {len(self.evicted)} eviction(s)."
        )


class NaclPoint(engine.Point["_Outcome"]):
    """Network ACL entries: an inbound attacker at ingress (and egress when enabled), an
    outbound malicious destination at egress only; CAPACITY per ACL and direction."""

    function, verb, where = FUNCTION_NAME, "Denied", "in network ACLs"
    outcome = _Outcome

    def finding_subnets(self, resource: Mapping[str, Any]) -> Sequence[str]:
        return finding_subnets(resource)

    def refuse(self, finding: intake.Finding) -> str | None:
        return _no_target(finding, self.config)

    def enforce(self, job: engine.Job, outcome: _Outcome) -> dict[str, Any] | str:
        if not self.config.nacl_ids and not job.findings:
            return (
                "no target network ACL: NACL_IDS is empty, so only findings (through their "
                "instance's subnet) can be blocked"
            )
        blocker = Blocker(self.config, self.clock)
        nacl_ids, no_acl = _target_acls(blocker, job.findings)
        if no_acl is not None:
            return no_acl
        _block(blocker, nacl_ids, job, outcome)
        return {"networkAcls": nacl_ids}


# --------------------------------------------------------------------------- operations


def _directions_by_address(
    config: Config,
    candidates: Sequence[tuple[addresses.IPAddress, catalog.Role]],
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
        if role is catalog.Role.INBOUND_ATTACKER:
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


def _block(blocker: Blocker, nacl_ids: Sequence[str], job: engine.Job, outcome: _Outcome) -> None:
    by_direction = _directions_by_address(blocker.config, job.candidates, outcome)
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
        outcome.resources.append(_acl_arn(acl, job.region))
        with blocker.holding(nacl_id):
            for direction, cidrs in by_direction.items():
                target = Target(nacl_id, direction)
                for cidr in cidrs:
                    expires_at = blocker.record(target, cidr, job)
                    _place(blocker, target, cidr, expires_at, frozenset(cidrs), outcome)


def _place(
    blocker: Blocker,
    target: Target,
    cidr: str,
    expires_at: int,
    keep: frozenset[str],
    outcome: _Outcome,
) -> None:
    try:
        placement = blocker.place(target, cidr, keep=keep, evicted=outcome.evicted)
    except (_NoRoom, _AclFull) as exc:
        blocker.withdraw(target, cidr, blocker.table.load_one(target))
        outcome.rejected.append((cidr, f"{target}: {exc}"))
        return
    except _AclGone:
        outcome.rejected.append((cidr, f"network ACL {target.nacl_id} was deleted"))
        return
    if placement.rule_number is None:
        outcome.rejected.append((cidr, f"{target}: withdrawn by a concurrent unblock or eviction"))
        return
    outcome.blocked.append(
        Blocked(target, cidr, placement.rule_number, expires_at, placement.created)
    )


def _target_acls(
    blocker: Blocker, findings: Sequence[intake.Finding]
) -> tuple[list[str], str | None]:
    """``NACL_IDS``, or else the ACLs of the findings' subnets (and why there are none)."""
    if blocker.config.nacl_ids:
        return list(blocker.config.nacl_ids), None
    subnets = _dedupe(s for finding in findings for s in finding.subnets)
    nacl_ids = blocker.acls.for_subnets(subnets)
    if nacl_ids:
        return nacl_ids, None
    return [], f"no network ACL is associated with subnet(s) {', '.join(subnets)} here"


def _no_target(finding: intake.Finding, config: Config) -> str | None:
    if config.nacl_ids or finding.subnets:
        return None
    return (
        "no target network ACL: NACL_IDS is empty and the finding names no subnet "
        "(resource.instanceDetails.networkInterfaces[].subnetId)"
    )


apply = NaclPoint.apply
# Target ACLs: ``NACL_IDS``; when it is empty, the ACLs of the subnets of the finding's
# instance. The rows are idempotent on their own too (keyed by address), so even a replay
# outside the idempotency window creates no second entry.
handle_finding = NaclPoint.handle_finding
block = NaclPoint.block


def _recorded(blocker: Blocker, cidrs: Sequence[str]) -> list[tuple[Target, str]]:
    """Where a row or a rule item names one of ``cidrs``, by target."""
    return [
        (target, cidr)
        for target, state in sorted(blocker.table.load().items())
        for cidr in cidrs
        if state.numbers_of(cidr) or cidr in state.rows
    ]


def unblock(
    request: blocking.UnblockRequest, config: Config, clock: Clock, *, account: str, region: str
) -> dict[str, Any]:
    """Remove the blocks of the given addresses wherever they were recorded."""
    outcome = _Outcome()
    hosts = engine.parse_hosts(request.addresses, outcome.rejected)
    cidrs = _dedupe(addresses.canonical_cidr(host) for host in hosts)
    blocker = Blocker(config, clock)
    unblocked: list[dict[str, Any]] = []
    actions: list[str] = []
    for nacl_id, recorded in groupby(_recorded(blocker, cidrs), key=lambda r: r[0].nacl_id):
        with blocker.holding(nacl_id):
            for target, cidr in recorded:
                removed = blocker.withdraw(target, cidr, blocker.table.load_one(target))
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
    return engine.unblock_result(
        NaclPoint(config, clock),
        request,
        unblocked=unblocked,
        count=len(found),
        not_blocked=[cidr for cidr in cidrs if cidr not in found],
        rejected=outcome.rejected,
        actions=actions,
        account=account,
        region=region,
    )


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
                **({"removeAfter": blocking.iso(remove_after)} if remove_after is not None else {}),
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
        with blocker.holding(nacl_id):
            for target in targets:
                blocker.sweep_target(target, now, out)
    except _AclGone:
        return None  # deleted while being swept
    return acl


def sweep(config: Config, clock: Clock, *, account: str, region: str) -> dict[str, Any]:
    """Expire blocks and reconcile every ACL with the table, both ways, without halting.

    ACLs swept: ``NACL_IDS`` plus every ACL the table records blocks or rules for (with
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
    notified = bool(out.lines) and NaclPoint(config, clock).publish(
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
