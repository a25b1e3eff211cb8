"""Deny attacker addresses in network ACLs, expire the entries, never halt on drift.

Every entry is a DENY of one host (``/32`` through ``CidrBlock``, ``/128`` through
``Ipv6CidrBlock``) for all protocols, inside a reserved, inclusive rule-number range
(``RULE_RANGE_START``..``RULE_RANGE_END``), at most ``CAPACITY`` per ACL and direction
(a *target*). docs/architecture.md, sections 14, 15 and 44, says why it is built so.

State table items (partition key ``pk``, TTL attribute ``expires_at``)::

    entry#<acl>#<ingress|egress>#<cidr>   a block (a *row*): expiry, rule number, reason
    rule#<acl>#<ingress|egress>#<number>  proof that the entry at <number> is ours: the cidr
    lease#<acl>                           the ACL's one writer (functions.common.lease)
    orphan#<acl>#<direction>#<n>#<cidr>   when a sweep first saw an unrecorded deny of ours

A rule item has no expiry: it is written before its entry is created and deleted only
after the entry is seen gone, so an entry of ours is never unnamed, even after DynamoDB's
TTL deleted its row. Anything else in the range is foreign: never changed, its number
never used, reported by every sweep, except a deny of exactly our form that has stayed
unrecorded for ``ORPHAN_GRACE_SECONDS``. Every write happens under the ACL's lease,
renewed before it, so inside it the code reads, plans and writes in sequence. An answer
that may come from a retry of a request that had landed is decided by reading back, and
``DescribeNetworkAcls`` (eventually consistent) is read again before an entry's presence
or absence is believed (``VERIFY_READS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Self

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import Field, ValidationInfo, field_validator, model_validator

from functions.common import addresses, aws, blocking, engine, envvars, intake, state
from functions.common.blocking import SYSTEM_CLOCK, Clock  # noqa: F401  (callers use logic.X)
from functions.common.finding_catalog import Role
from functions.common.lease import (  # noqa: F401  (callers use logic.X)
    LEASE_ATTEMPTS,
    LEASE_BACKOFF_CAP_SECONDS,
    LEASE_PREFIX,
    LEASE_SECONDS,
    LeaseBusy,
    LeaseLost,
    Leases,
)

ConfigError = engine.ConfigError
FUNCTION_NAME = "nacl_blocker"
logger = Logger(service=FUNCTION_NAME, child=True)

ROW_PREFIX, RULE_PREFIX, ORPHAN_PREFIX = "entry#", "rule#", "orphan#"
ORPHAN_GRACE_SECONDS = 24 * 3600
EGRESS_DISABLED = (
    "outbound malicious destination: only an egress entry answers it, and egress is not "
    "enabled (egress_enabled)"
)
MAX_RULE_NUMBER = 32766  # 32767 is the ACL's catch-all; EC2 accepts 1..32766 for the rest
MAX_CAPACITY = 40  # AWS's adjustable quota of rules per ACL and direction tops out at 40
DIRECTIONS = ("ingress", "egress")
# Under the lease nothing of ours races a placement: what is left is someone else's entry
# landing on the chosen number.
MAX_ATTEMPTS = 10
# Reads of DescribeNetworkAcls before an entry's presence or absence is believed.
VERIFY_READS = 5
# AWS answers InvalidNetworkAclID.NotFound, moto InvalidRouteTableID.NotFound.
_ACL_NOT_FOUND = frozenset({"InvalidNetworkAclID.NotFound", "InvalidRouteTableID.NotFound"})
# What botocore raises when a request may or may not have taken effect.
_AMBIGUOUS = (ClientError, BotoCoreError, ResponseParserError)
_NACL_ID = re.compile(r"acl-[0-9a-f]{8,17}")
# AWS counts rules per ACL, direction and IP version (its own and the default rule too);
# moto has no such quota.
ENTRY_LIMIT_EXCEEDED = "NetworkAclEntryLimitExceeded"


class PlacementError(RuntimeError):
    """An entry could not be placed within the retry budget; Lambda should retry."""


class _Refused(Exception):
    """The entry cannot go in: no room in the range, or AWS's quota of rules."""


class _Restart(Exception):
    """This attempt made room itself (an eviction); re-read and re-plan at once."""


class _Conflict(Exception):
    """What this attempt read changed under it (someone else's entry); back off, re-plan."""


class _AclGone(Exception):
    """The network ACL does not exist (any more)."""


class Config(engine.Settings):
    rule_range_start: int = Field(alias="RULE_RANGE_START")
    rule_range_end: int = Field(alias="RULE_RANGE_END")
    nacl_ids: tuple[str, ...] = Field(default=(), alias="NACL_IDS")
    capacity: int = Field(default=10, alias="CAPACITY")
    directions: tuple[str, ...] = Field(default=("ingress",), alias="DIRECTIONS")

    @field_validator("nacl_ids", "directions", mode="before")
    @classmethod
    def _lists(cls, raw: Any, info: ValidationInfo) -> Any:
        return envvars.json_strings(str(info.field_name).upper(), raw)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for nacl_id in self.nacl_ids:
            if not _NACL_ID.fullmatch(nacl_id):
                raise ValueError(f"NACL_IDS: {nacl_id!r} is not a network ACL id (acl-...)")
        if len(set(self.nacl_ids)) != len(self.nacl_ids):
            raise ValueError("NACL_IDS lists a network ACL twice")
        start, end = self.rule_range_start, self.rule_range_end
        if not 1 <= start <= MAX_RULE_NUMBER:
            raise ValueError(f"RULE_RANGE_START must be 1..{MAX_RULE_NUMBER}, got {start}")
        if not start <= end <= MAX_RULE_NUMBER:
            raise ValueError(
                f"RULE_RANGE_END must be {start}..{MAX_RULE_NUMBER} "
                f"(RULE_RANGE_START..{MAX_RULE_NUMBER}), got {end}"
            )
        if not 1 <= self.capacity <= MAX_CAPACITY:
            raise ValueError(f"CAPACITY must be 1..{MAX_CAPACITY}, got {self.capacity}")
        if sorted(self.directions) not in (["ingress"], ["egress", "ingress"]):
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


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One direction of one network ACL: the unit that CAPACITY applies to."""

    nacl_id: str
    direction: str

    @property
    def egress(self) -> bool:
        return self.direction == "egress"

    def pk(self, prefix: str, tail: object) -> str:
        return f"{prefix}{self.nacl_id}#{self.direction}#{tail}"

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
        return self.denies(self.cidr) and self.cidr.endswith(("/32", "/128"))


@dataclass(frozen=True, slots=True)
class Acl:
    id: str
    owner: str
    entries: Mapping[tuple[bool, int], Entry]

    def entry(self, target: Target, rule_number: int) -> Entry | None:
        return self.entries.get((target.egress, rule_number))

    def in_range(self, target: Target, numbers: range) -> list[Entry]:
        return [
            e for (eg, n), e in sorted(self.entries.items()) if eg == target.egress and n in numbers
        ]

    def arn(self, region: str) -> str:
        return f"arn:{aws.partition(region)}:ec2:{region}:{self.owner}:network-acl/{self.id}"


@dataclass(frozen=True, slots=True)
class Row:
    target: Target
    cidr: str
    expires_at: int
    rule_number: int | None


@dataclass
class Records:
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
        row = self.rows.get(entry.cidr)
        named = self.rules.get(entry.rule_number) == entry.cidr or (
            row is not None and row.rule_number == entry.rule_number
        )
        return entry.denies(entry.cidr) and named


# --------------------------------------------------------------------------- AWS


def _parse_item(item: Mapping[str, Any]) -> tuple[Target, Row | tuple[int, str]] | None:
    """A row, or a rule item as (number, cidr), with its target; ``None`` (logged) for
    an item edited out of shape."""
    pk = item["pk"]["S"]
    is_row = pk.startswith(ROW_PREFIX)
    try:
        nacl_id, direction, tail = pk.split("#", 3)[1:]
        if direction not in DIRECTIONS:
            raise ValueError(direction)
        target = Target(nacl_id, direction)
        if not is_row:
            return target, (int(tail), item["cidr"]["S"])
        number = item.get("rule_number")
        expires_at = int(item["expires_at"]["N"])
        return target, Row(target, tail, expires_at, int(number["N"]) if number else None)
    except (KeyError, ValueError):
        logger.warning("skipping unreadable state item", extra={"item": item})
        return None


def _entry(raw: Mapping[str, Any]) -> Entry:
    block = str(raw.get("CidrBlock") or raw.get("Ipv6CidrBlock") or "")
    try:
        cidr = addresses.canonical_entry(block) if block else ""
    except ValueError:
        cidr = block
    action, protocol = str(raw.get("RuleAction", "")).lower(), str(raw.get("Protocol", ""))
    return Entry(int(raw["RuleNumber"]), cidr, action, protocol)


class NetworkAcls:
    def __init__(self) -> None:
        self._ec2 = aws.client("ec2")

    def read(self, nacl_id: str) -> Acl | None:
        """The ACL and every entry it holds now; ``None`` if it does not exist."""
        try:
            found = self._ec2.describe_network_acls(NetworkAclIds=[nacl_id])["NetworkAcls"]
        except ClientError as exc:
            if aws.error_code(exc) in _ACL_NOT_FOUND:
                return None
            raise
        if not found:
            return None
        entries = {
            (bool(e["Egress"]), int(e["RuleNumber"])): _entry(e) for e in found[0]["Entries"]
        }
        return Acl(found[0]["NetworkAclId"], str(found[0].get("OwnerId", "")), entries)

    def for_subnets(self, subnet_ids: Sequence[str]) -> list[str]:
        """The ACLs associated with ``subnet_ids`` (in this account and region)."""
        pages = self._ec2.get_paginator("describe_network_acls").paginate(
            Filters=[{"Name": "association.subnet-id", "Values": list(subnet_ids)}]
        )
        return sorted({acl["NetworkAclId"] for page in pages for acl in page["NetworkAcls"]})

    def create_deny(self, target: Target, rule_number: int, cidr: str) -> bool:
        """Deny ``cidr`` at ``rule_number``; ``False`` when another entry holds the number.

        An error does not prove the entry absent (a retry of a create that landed answers
        ``NetworkAclEntryAlreadyExists``; a dropped connection may follow one): a fresh
        read decides.
        """
        try:
            self._ec2.create_network_acl_entry(
                NetworkAclId=target.nacl_id,
                RuleNumber=rule_number,
                Protocol="-1",
                RuleAction="deny",
                Egress=target.egress,
                **{"Ipv6CidrBlock" if ":" in cidr else "CidrBlock": cidr},
            )
        except _AMBIGUOUS as exc:
            acl = self.read(target.nacl_id)
            entry = acl.entry(target, rule_number) if acl else None
            if entry is not None and entry.denies(cidr):
                return True
            if aws.error_code(exc) == "NetworkAclEntryAlreadyExists":
                return False
            if aws.error_code(exc) == ENTRY_LIMIT_EXCEEDED:
                raise _Refused(
                    f"AWS refused the entry: {target} holds its quota of rules for IPv"
                    f"{6 if ':' in cidr else 4} (the ACL's own rules and the default rule "
                    "count too); lower capacity or raise the quota"
                ) from None
            raise
        return True

    def delete(self, target: Target, rule_number: int) -> None:
        """Remove the entry at ``rule_number``; done once no entry holds that number (a
        retry of a delete that landed errors: AWS NotFound, moto an HTML 500)."""
        try:
            self._ec2.delete_network_acl_entry(
                NetworkAclId=target.nacl_id, RuleNumber=rule_number, Egress=target.egress
            )
        except _AMBIGUOUS:
            acl = self.read(target.nacl_id)
            if acl is not None and acl.entry(target, rule_number) is not None:
                raise


# --------------------------------------------------------------------------- the writer


@dataclass(frozen=True, slots=True)
class Eviction:
    target: Target
    cidr: str
    rule_number: int | None
    expires_at: int | None  # None: no block was recorded for it

    def result(self) -> dict[str, Any]:
        return _where(self.target, self.cidr, self.rule_number)

    def line(self, config: Config) -> str:
        why = (
            "no block was recorded for it"
            if self.expires_at is None
            else f"it was due to expire first ({blocking.iso(self.expires_at)})"
        )
        return (
            f"Evicted {self.cidr} (rule {self.rule_number}) from {self.target} to stay within "
            f"CAPACITY {config.capacity} and the range {config.range_text}: {why}"
        )


def _where(target: Target, cidr: str, number: int | None) -> dict[str, Any]:
    return {
        "address": cidr,
        "networkAclId": target.nacl_id,
        "direction": target.direction,
        "ruleNumber": number,
    }


class Writer:
    """Places, evicts, removes and sweeps entries; every write under the ACL's lease."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.table = state.StateTable(config.state_table)
        self.acls = NetworkAcls()
        self.leases = Leases(self.table, clock, "network ACL")

    # ------------------------------------------------------------------- the table

    def load(self, target: Target | None = None) -> dict[Target, Records]:
        """Rows and rule items (strongly consistent), of one target or of all."""
        scope = f"{target.nacl_id}#{target.direction}#" if target else ""
        found: dict[Target, Records] = {}
        for item in self.table.scan(ROW_PREFIX + scope, RULE_PREFIX + scope):
            parsed = _parse_item(item)
            if parsed is None:
                continue
            where, what = parsed
            records = found.setdefault(where, Records())
            if isinstance(what, Row):
                records.rows[what.cidr] = what
            else:
                records.rules[what[0]] = what[1]
        return found

    def records(self, target: Target) -> Records:
        return self.load(target).get(target) or Records()

    def write(self, where: Target, call: Callable[..., Any], /, **request: Any) -> Any:
        """A write to ``where``'s ACL or records, once this invocation owns its lease."""
        self.leases.own(where.nacl_id)
        return call(**request)

    def put_rule(self, target: Target, number: int, cidr: str) -> None:
        item = {"rule_number": {"N": str(number)}, "cidr": {"S": cidr}}
        item |= {"nacl_id": {"S": target.nacl_id}, "direction": {"S": target.direction}}
        pk = state.key(target.pk(RULE_PREFIX, number))
        self.write(target, self.table.db.put_item, TableName=self.table.name, Item=pk | item)

    def forget_rule(self, target: Target, number: int, cidr: str) -> None:
        """Drop the rule item of ``number`` if it names ``cidr`` (and no other)."""
        self.write(
            target,
            self.table.conditional,
            call=self.table.db.delete_item,
            Key=state.key(target.pk(RULE_PREFIX, number)),
            ConditionExpression="#cidr = :cidr",
            ExpressionAttributeNames={"#cidr": "cidr"},
            ExpressionAttributeValues={":cidr": {"S": cidr}},
        )

    def record(self, target: Target, cidr: str, job: engine.Job) -> int:
        """Record (or extend) the block of ``cidr``; its expiry."""
        now = int(self.clock.now())
        identity = {"nacl_id": target.nacl_id, "direction": target.direction, "cidr": cidr}
        return int(
            self.write(
                target,
                self.table.upsert,
                pk=target.pk(ROW_PREFIX, cidr),
                identity={name: {"S": value} for name, value in identity.items()},
                expires_at=now + job.ttl_seconds,
                reason=job.reason,
                finding_ids=job.finding_ids,
                now=now,
            )
        )

    # ------------------------------------------------------------------- entries

    def _read(self, target: Target) -> Acl:
        acl = self.acls.read(target.nacl_id)
        if acl is None:
            raise _AclGone(target.nacl_id)
        return acl

    def _settled(self, target: Target, number: int, gone: bool) -> Entry | None:
        """The entry at ``number``, read again until it shows (``gone``: until it does
        not) or VERIFY_READS reads are spent: one read of an eventually consistent API
        proves neither."""
        attempts = blocking.Attempts(self.clock, VERIFY_READS)
        entry: Entry | None = None
        for attempt in attempts:
            acl = self.acls.read(target.nacl_id)
            entry = acl.entry(target, number) if acl else None
            if acl is None or (entry is None) == gone or not attempts.wait(attempt):
                break
        return entry

    def remove(self, target: Target, number: int, cidr: str) -> bool | None:
        """Remove our deny of ``cidr`` at ``number``, then its rule item. ``True``: removed
        and seen gone; ``False``: no such deny; ``None``: deleted but still shown, so the
        rule item stays for the next sweep."""
        entry = self._settled(target, number, gone=False)
        removed = entry is not None and entry.denies(cidr)
        if removed:
            self.write(target, self.acls.delete, target=target, rule_number=number)
            if self._settled(target, number, gone=True) is not None:
                logger.warning("deleted entry still shown", extra={"rule_number": number})
                return None
        self.forget_rule(target, number, cidr)
        return removed

    def remove_all(self, target: Target, cidr: str, records: Records) -> list[int]:
        """Remove every entry of ``cidr`` its records name (once its row is gone)."""
        return [n for n in records.numbers_of(cidr) if self.remove(target, n, cidr)]

    def withdraw(self, target: Target, cidr: str) -> list[int]:
        """Drop the block of ``cidr``: row, rule items, entries; the numbers removed."""
        records = self.records(target)
        self.write(target, self.table.delete, pk=target.pk(ROW_PREFIX, cidr))
        return self.remove_all(target, cidr, records)

    def place(
        self, target: Target, cidr: str, keep: frozenset[str], evicted: list[Eviction]
    ) -> tuple[int, bool] | None:
        """Make the recorded block of ``cidr`` an entry in the range: (number, created),
        or ``None`` when its row was withdrawn. ``keep``: addresses of the same request,
        never evicted for each other. Raises _Refused, _AclGone, or PlacementError when
        someone else's entries keep landing on the numbers chosen."""
        last = "none"
        attempts = blocking.Attempts(self.clock, MAX_ATTEMPTS)
        for attempt in attempts:
            try:
                return self._place_once(target, cidr, keep, evicted)
            except _Restart:
                continue
            except _Conflict as exc:
                last = str(exc)
            logger.info("placement conflicted", extra={"cidr": cidr, "attempt": attempt + 1})
            if not attempts.wait(attempt):
                break
        raise PlacementError(
            f"{cidr} was not placed in {target} {attempts.summary()}; last conflict: {last}"
        )

    def _place_once(
        self, target: Target, cidr: str, keep: frozenset[str], evicted: list[Eviction]
    ) -> tuple[int, bool] | None:
        acl, records = self._read(target), self.records(target)
        row = records.rows.get(cidr)
        if row is None:
            return None
        mine = records.numbers_of(cidr)
        placed = [n for n in mine if (e := acl.entry(target, n)) and e.denies(cidr)]
        if placed:  # in place; a rule item lost by hand is written back
            return self._placed(target, row, records, placed[0], created=False)
        held = {n for n, c in records.rules.items() if c != cidr}
        taken = held | {e.rule_number for e in acl.in_range(target, self.config.rule_numbers)}
        # A number a rule item already names for this address comes first: a create in
        # flight from a holder that outlived its lease then lands on the same entry.
        free = [n for n in mine if n in self.config.rule_numbers and n not in taken]
        free += [n for n in self.config.rule_numbers if n not in taken]
        if len(held) >= self.config.capacity or not free:
            self.evict(target, acl, records, keep, evicted)
            raise _Restart
        number = free[0]
        if records.rules.get(number) != cidr:
            self.put_rule(target, number, cidr)
        try:
            created = self.write(
                target, self.acls.create_deny, target=target, rule_number=number, cidr=cidr
            )
        except _Refused:
            self.forget_rule(target, number, cidr)
            raise
        if not created:
            self.forget_rule(target, number, cidr)
            raise _Conflict(f"rule {number} was taken")
        return self._placed(target, row, records, number, created=True)

    def _placed(
        self, target: Target, row: Row, records: Records, number: int, *, created: bool
    ) -> tuple[int, bool]:
        if records.rules.get(number) != row.cidr:
            self.put_rule(target, number, row.cidr)
        if row.rule_number != number:  # for people, and a second proof
            self.write(
                target,
                self.table.conditional,
                call=self.table.db.update_item,
                Key=state.key(target.pk(ROW_PREFIX, row.cidr)),
                UpdateExpression="SET #number = :number",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#number": "rule_number"},
                ExpressionAttributeValues={":number": {"N": str(number)}},
            )
        return number, created

    def evict(
        self,
        target: Target,
        acl: Acl,
        records: Records,
        keep: frozenset[str],
        evicted: list[Eviction],
    ) -> None:
        """Remove the entry of the block expiring first (one no row stands behind first)."""
        candidates = [(n, c) for n, c in records.rules.items() if c not in keep]
        if not candidates:
            in_range = acl.in_range(target, self.config.rule_numbers)
            foreign = [e for e in in_range if not records.owns(e)]
            raise _Refused(
                f"no free rule number in the reserved range {self.config.range_text} and "
                f"nothing this remediator may evict ({len(foreign)} number(s) there are held "
                "by entries it did not create)"
            )

        def expiry(candidate: tuple[int, str]) -> tuple[int, int]:
            row = records.rows.get(candidate[1])
            return (row.expires_at if row else -1, candidate[0])

        number, cidr = min(candidates, key=expiry)
        row = records.rows.get(cidr)
        if row is not None and not self.write(
            target,
            self.table.delete_if_unchanged,
            pk=target.pk(ROW_PREFIX, cidr),
            expires_at=row.expires_at,
        ):
            raise _Conflict(f"{cidr} was re-blocked while being evicted")
        self.remove_all(target, cidr, records)
        evicted.append(Eviction(target, cidr, number, row.expires_at if row else None))

    # ------------------------------------------------------------------- the sweep

    def sweep_target(self, target: Target, now: int, log: engine.SweepLog) -> None:
        """Reconcile one ACL direction with its records, both ways; log what it saw."""
        # Blocks expired (decided from expires_at: DynamoDB TTL deletes rows lazily) or
        # covered by the allowlist as it is now.
        records = self.records(target)
        for row in sorted(records.rows.values(), key=lambda r: r.cidr):
            lifted = (
                None
                if row.expires_at <= now
                else blocking.lift_reason(row.cidr, self.config.allowlist)
            )
            if (row.expires_at > now and lifted is None) or not self.write(
                target,
                self.table.delete_if_unchanged,
                pk=target.pk(ROW_PREFIX, row.cidr),
                expires_at=row.expires_at,
            ):
                continue
            removed = self.remove_all(target, row.cidr, records)
            number = removed[0] if removed else None
            rule = f" (removed rule {number})" if number is not None else ""
            why = lifted or "its block expired"
            line = f"Unblocked {row.cidr} in {target}{rule}: {why}"
            log.add("lifted" if lifted else "expired", _where(target, row.cidr, number), line)
        # Rule items no block stands behind (row deleted by hand or TTL, remover stopped).
        records = self.records(target)
        for number, cidr in sorted(records.rules.items()):
            if cidr not in records.rows and self.remove(target, number, cidr):
                why = "no unexpired block is recorded for it"
                line = f"Removed rule {number} ({cidr}) from {target}: {why}"
                log.add("removedUnrecorded", _where(target, cidr, number), line)
        # Over CAPACITY (it was lowered since the entries were placed).
        evicted: list[Eviction] = []
        for _ in range(len(records.rules)):
            if len((records := self.records(target)).rules) <= self.config.capacity:
                break
            try:
                self.evict(target, self._read(target), records, frozenset(), evicted)
            except (_Conflict, _Refused):
                break
        self._log_evictions(log, evicted)
        # Recorded, unexpired blocks without their entry: re-create them.
        acl, records = self._read(target), self.records(target)
        for row in sorted(records.rows.values(), key=lambda r: r.cidr):
            if row.expires_at <= now or any(
                (e := acl.entry(target, n))
                and e.denies(row.cidr)
                and records.rules.get(n) == row.cidr
                for n in records.numbers_of(row.cidr)
            ):
                continue
            evicted = []
            try:
                placed = self.place(target, row.cidr, frozenset({row.cidr}), evicted)
            except _Refused as exc:
                self.withdraw(target, row.cidr)
                line = f"Dropped the block of {row.cidr} in {target}: {exc}"
                log.add("dropped", _where(target, row.cidr, None), line)
                continue
            except PlacementError as exc:
                log.add(
                    "failed", _where(target, row.cidr, None), f"Could not restore {row.cidr}: {exc}"
                )
                continue
            finally:
                self._log_evictions(log, evicted)
            if placed is not None and placed[1]:
                line = (
                    f"Re-created rule {placed[0]} for {row.cidr} in {target}: its block is "
                    "recorded but the entry was missing"
                )
                log.add("restored", _where(target, row.cidr, placed[0]), line)
        # Entries nothing proves ours: reported by every sweep and never touched, except
        # a deny of exactly our form left unrecorded for ORPHAN_GRACE_SECONDS.
        acl, records = self._read(target), self.records(target)
        for entry in acl.in_range(target, self.config.rule_numbers):
            if records.owns(entry):
                continue
            orphan = target.pk(ORPHAN_PREFIX, f"{entry.rule_number}#{entry.cidr}")
            since = (
                self.table.first_seen(orphan, now, 2 * ORPHAN_GRACE_SECONDS)
                if entry.has_our_form
                else None
            )
            if since is None or now < since + ORPHAN_GRACE_SECONDS:
                self._log_foreign(log, target, entry, since)
            elif self.remove(target, entry.rule_number, entry.cidr):
                self.table.delete(orphan)
                line = (
                    f"Removed rule {entry.rule_number} (deny {entry.cidr}) from {target}: it is "
                    "exactly a deny this remediator writes, inside its range, and no block has "
                    f"been recorded for it since {blocking.iso(since)}"
                )
                log.add("removedOrphan", _where(target, entry.cidr, entry.rule_number), line)

    def _log_evictions(self, log: engine.SweepLog, evicted: Sequence[Eviction]) -> None:
        for eviction in evicted:
            log.add("evicted", eviction.result(), eviction.line(self.config))

    def _log_foreign(
        self, log: engine.SweepLog, target: Target, entry: Entry, since: int | None
    ) -> None:
        after = (
            {"removeAfter": blocking.iso(since + ORPHAN_GRACE_SECONDS)} if since is not None else {}
        )
        item = {
            "networkAclId": target.nacl_id,
            "direction": target.direction,
            "ruleNumber": entry.rule_number,
            "cidr": entry.cidr,
            "ruleAction": entry.action,
            **after,
        }
        log.add(
            "foreign",
            item,
            f"Left rule {entry.rule_number} ({entry.action} {entry.cidr or 'without a CIDR'}) "
            f"in {target} alone: it is inside the reserved range {self.config.range_text} but "
            "this remediator did not create it, so that number is not available to it",
        )


# --------------------------------------------------------------------------- the point


@dataclass(frozen=True, slots=True)
class Blocked:
    target: Target
    address: str
    rule_number: int
    expires_at: int
    created: bool

    def result(self) -> dict[str, Any]:
        until = {"expiresAt": blocking.iso(self.expires_at)}
        return _where(self.target, self.address, self.rule_number) | until

    def line(self, config: Config) -> str:
        where, until = f"in {self.target} as rule {self.rule_number}", blocking.iso(self.expires_at)
        if self.created:
            return f"Denied {self.address} {where} until {until}"
        return f"{self.address} was already denied {where}; blocked until {until}"


class NaclPoint(engine.Point):
    """Network ACL entries: an inbound attacker at ingress (and egress when enabled), an
    outbound malicious destination at egress only; CAPACITY per ACL and direction."""

    function, verb, where = FUNCTION_NAME, "Denied", "in network ACLs"

    def refuse(self, finding: intake.Finding) -> str | None:
        if self.config.nacl_ids or finding.subnets:
            return None
        return (
            "no target network ACL: NACL_IDS is empty and the finding names no subnet "
            "(resource.instanceDetails.networkInterfaces[].subnetId)"
        )

    def enforce(self, job: engine.Job, outcome: engine.Tally) -> dict[str, Any] | str:
        """Target ACLs: NACL_IDS, or else the ACLs of the findings' subnets."""
        writer = Writer(self.config, self.clock)
        nacl_ids = list(self.config.nacl_ids)
        if not nacl_ids and not job.findings:
            return (
                "no target network ACL: NACL_IDS is empty, so only findings (through their "
                "instance's subnet) can be blocked"
            )
        if not nacl_ids:
            subnets = _dedupe(s for finding in job.findings for s in finding.subnets)
            nacl_ids = writer.acls.for_subnets(subnets)
            if not nacl_ids:
                return f"no network ACL is associated with subnet(s) {', '.join(subnets)} here"
        by_direction = self.route(job.candidates, outcome)
        for nacl_id in nacl_ids if by_direction else ():
            acl = writer.acls.read(nacl_id)
            if acl is None:
                cidrs = _dedupe(c for found in by_direction.values() for c in found)
                outcome.rejected += [(c, f"network ACL {nacl_id} does not exist") for c in cidrs]
                continue
            outcome.resources.append(acl.arn(job.region))
            with writer.leases.holding(nacl_id):
                for direction, cidrs in by_direction.items():
                    for cidr in cidrs:
                        self._block(
                            writer, Target(nacl_id, direction), cidr, job, frozenset(cidrs), outcome
                        )
        return {"networkAcls": nacl_ids}

    def places(self, host: addresses.IPAddress, role: Role) -> Sequence[str] | str:
        """An inbound attacker in every configured direction, an outbound malicious
        destination at egress only, when egress is enabled."""
        if role is Role.INBOUND_ATTACKER:
            return self.config.directions
        return ("egress",) if "egress" in self.config.directions else EGRESS_DISABLED

    def per_request(self, place: str) -> tuple[int, str]:
        cap = self.config.capacity
        return cap, f"one request may block at most {cap} addresses per network ACL (CAPACITY)"

    @staticmethod
    def _block(
        writer: Writer,
        target: Target,
        cidr: str,
        job: engine.Job,
        keep: frozenset[str],
        outcome: engine.Tally,
    ) -> None:
        expires_at = writer.record(target, cidr, job)
        try:
            placed = writer.place(target, cidr, keep, outcome.evicted)
        except _Refused as exc:
            writer.withdraw(target, cidr)
            outcome.rejected.append((cidr, f"{target}: {exc}"))
        except _AclGone:
            outcome.rejected.append((cidr, f"network ACL {target.nacl_id} was deleted"))
        else:
            if placed is None:
                why = f"{target}: withdrawn by a concurrent unblock or eviction"
                outcome.rejected.append((cidr, why))
            else:
                outcome.blocked.append(Blocked(target, cidr, placed[0], expires_at, placed[1]))

    def lift(self, cidrs: Sequence[str]) -> engine.Lifted:
        """Wherever a row or rule item names one of ``cidrs``: row, rule items, entries."""
        writer = Writer(self.config, self.clock)
        recorded = [
            (target, cidr)
            for target, records in sorted(writer.load().items())
            for cidr in cidrs
            if records.numbers_of(cidr) or cidr in records.rows
        ]
        lifted = engine.Lifted()
        for nacl_id, found in groupby(recorded, key=lambda r: r[0].nacl_id):
            with writer.leases.holding(nacl_id):
                for target, cidr in found:
                    removed = writer.withdraw(target, cidr)
                    where = {k: v for k, v in _where(target, cidr, None).items() if v is not None}
                    lifted.unblocked.append(where | {"ruleNumbers": removed})
                    lifted.found.add(cidr)
                    rules = f" (removed rule {', '.join(map(str, removed))})" if removed else ""
                    lifted.actions.append(f"Unblocked {cidr} in {target}{rules}")
        return lifted

    sweep_title = "Network ACL blocklist sweep"
    sweep_keys = (
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

    def reconcile(self, now: int, region: str, log: engine.SweepLog) -> tuple[list[str], str]:
        """Every ACL of NACL_IDS and every ACL the table records blocks or rules for."""
        writer = Writer(self.config, self.clock)
        recorded = writer.load()
        arns: list[str] = []
        for nacl_id in sorted(set(self.config.nacl_ids) | {t.nacl_id for t in recorded}):
            targets = {Target(nacl_id, d) for d in self.config.directions}
            targets |= {t for t in recorded if t.nacl_id == nacl_id}
            acl = writer.acls.read(nacl_id)
            try:
                if acl is not None:
                    with writer.leases.holding(nacl_id):
                        for target in sorted(targets):
                            writer.sweep_target(target, now, log)
                    arns.append(acl.arn(region))
                    continue
            except _AclGone:
                pass  # deleted while being swept
            dropped = 0
            for target, records in writer.load().items():
                if target.nacl_id == nacl_id:
                    rows = [target.pk(ROW_PREFIX, cidr) for cidr in records.rows]
                    dropped += sum(writer.table.delete(pk) for pk in rows)
                    for number in records.rules:
                        writer.table.delete(target.pk(RULE_PREFIX, number))
            listed = " (NACL_IDS lists it)" if nacl_id in self.config.nacl_ids else ""
            line = f"Network ACL {nacl_id} does not exist{listed}: dropped {dropped} recorded"
            log.add("missingNetworkAcls", nacl_id, f"{line} block(s) for it")
        counts = {key: len(found) for key, found in log.result.items()}
        return arns, (
            f"{counts['expired']} expired, {counts['lifted']} lifted by the allowlist, "
            f"{counts['removedUnrecorded']} unrecorded removed, {counts['restored']} "
            f"re-created, {counts['evicted']} evicted, {counts['dropped']} dropped, "
            f"{counts['foreign']} foreign entr(y/ies) left alone in the reserved range."
        )


apply, handle_finding, block = NaclPoint.apply, NaclPoint.handle_finding, NaclPoint.block
unblock, sweep = NaclPoint.unblock, NaclPoint.sweep
