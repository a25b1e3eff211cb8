"""Deny attacker addresses in network ACLs, expire the entries, never halt on drift.

Every entry is a DENY of one host (``/32`` through ``CidrBlock``, ``/128`` through
``Ipv6CidrBlock``) for all protocols, inside a reserved, inclusive rule-number range
(``RULE_RANGE_START``..``RULE_RANGE_END``), at most ``CAPACITY`` per ACL and direction
(a *target*). docs/architecture.md, sections 14, 15 and 44, says why it is built so.

State table items (partition key ``pk``)::

    entry#<acl>#<ingress|egress>#<cidr>   a block (a *row*): blocked_until, rule_number, reason
    lease#<acl>                           the ACL's one writer (functions.common.lease)
    orphan#<acl>#<direction>#<n>#<cidr>   when a sweep first saw an unrecorded deny of ours

A row proves the entry at its ``rule_number`` ours. The number is written before the entry
is created; a block that ends (expiry, unblock, eviction, allowlist) is marked ended first
and its row deleted only once the entry is seen gone; and its expiry is ``blocked_until``,
not the table's TTL attribute, so DynamoDB never deletes a row whose entry may stand.
Anything else in the range is foreign: never changed, its number never used, reported by
every sweep, except a deny of exactly our form unrecorded for ``ORPHAN_GRACE_SECONDS``.
Every write happens under the ACL's lease, renewed before it, so the code reads, plans and
writes in sequence. An answer that may come from a retry of a request that had landed is
decided by reading back, and ``DescribeNetworkAcls`` (eventually consistent) is read again
before an entry's presence or absence is believed (``VERIFY_READS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import Field, ValidationInfo, field_validator, model_validator

from functions.common import addresses, aws, blocking, engine, envvars, intake, state
from functions.common.blocking import SYSTEM_CLOCK, Clock  # noqa: F401  (the handler's)
from functions.common.finding_catalog import Role
from functions.common.lease import Leases

ConfigError = engine.ConfigError
FUNCTION_NAME = "nacl_blocker"
logger = Logger(service=FUNCTION_NAME, child=True)

ROW_PREFIX, ORPHAN_PREFIX, UNTIL = "entry#", "orphan#", "blocked_until"
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


class PlacementError(RuntimeError):
    """An entry could not be placed within the retry budget; Lambda should retry."""


class _Refused(Exception):
    """The entry cannot go in: no room in the range, or AWS's quota of rules."""


class _AclGone(Exception):
    """The network ACL does not exist (any more)."""


class Config(engine.Settings):
    rule_range_start: int = Field(alias="RULE_RANGE_START", ge=1, le=MAX_RULE_NUMBER)
    rule_range_end: int = Field(alias="RULE_RANGE_END")
    nacl_ids: tuple[str, ...] = Field(default=(), alias="NACL_IDS")
    capacity: int = Field(default=10, alias="CAPACITY", ge=1, le=MAX_CAPACITY)
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
        if not start <= end <= MAX_RULE_NUMBER:
            raise ValueError(f"RULE_RANGE_END must be {start}..{MAX_RULE_NUMBER}, got {end}")
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

    def where(self, cidr: str, number: int | None) -> dict[str, Any]:
        return {
            "address": cidr,
            "networkAclId": self.nacl_id,
            "direction": self.direction,
            "ruleNumber": number,
        }

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


@dataclass(frozen=True, slots=True)
class Row:
    cidr: str
    until: int  # the block's expiry; at or before now once it ended
    rule_number: int | None  # the entry it names (None: never placed)

    @property
    def expiry(self) -> tuple[int, int]:
        """The order of eviction: the block expiring first (an ended one first)."""
        return self.until, self.rule_number or 0


Rows = Mapping[str, Row]  # one target's rows by CIDR


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

    def holds(self, target: Target, row: Row) -> bool:
        """Does the entry the row names stand, as we write it?"""
        entry = None if row.rule_number is None else self.entry(target, row.rule_number)
        return entry is not None and entry.denies(row.cidr)

    def arn(self, region: str) -> str:
        return f"arn:{aws.partition(region)}:ec2:{region}:{self.owner}:network-acl/{self.id}"


def _owns(rows: Rows, entry: Entry) -> bool:
    """Is ``entry`` ours: a deny of our form that a row names by its number?"""
    row = rows.get(entry.cidr)
    return row is not None and row.rule_number == entry.rule_number and entry.denies(entry.cidr)


# --------------------------------------------------------------------------- AWS


def _row(item: Mapping[str, Any]) -> tuple[Target, Row] | None:
    """A row with its target; ``None`` (logged) for an item edited out of shape. A row
    without a readable expiry counts as ended, so the sweep removes its entry."""
    try:
        nacl_id, direction, cidr = item["pk"]["S"].split("#", 3)[1:]
        if direction not in DIRECTIONS:
            raise ValueError(direction)
        number = item.get("rule_number")
        until = int(item.get(UNTIL, {"N": "0"})["N"])
        return Target(nacl_id, direction), Row(cidr, until, int(number["N"]) if number else None)
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
        read decides. AWS counts rules per ACL, direction and IP version, its own and the
        default rule included, and refuses one more with ``NetworkAclEntryLimitExceeded``
        (moto has no such quota).
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
            if aws.error_code(exc) == "NetworkAclEntryLimitExceeded":
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


class Writer:
    """Records, places, evicts, removes and sweeps; every write under the ACL's lease."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.table = state.StateTable(config.state_table, expiry=UNTIL)
        self.acls = NetworkAcls()
        self.leases = Leases(self.table, clock, "network ACL")

    def load(self, target: Target | None = None) -> dict[Target, dict[str, Row]]:
        """The rows (strongly consistent), of one target or of all."""
        scope = f"{target.nacl_id}#{target.direction}#" if target else ""
        found: dict[Target, dict[str, Row]] = {}
        for parsed in filter(None, map(_row, self.table.scan(ROW_PREFIX + scope))):
            found.setdefault(parsed[0], {})[parsed[1].cidr] = parsed[1]
        return found

    def rows(self, target: Target) -> dict[str, Row]:
        return self.load(target).get(target, {})

    def read(self, target: Target) -> Acl:
        acl = self.acls.read(target.nacl_id)
        if acl is None:
            raise _AclGone(target.nacl_id)
        return acl

    def write(self, target: Target, call: Any, /, **request: Any) -> Any:
        """A write to ``target``'s ACL or rows, once this invocation owns its lease."""
        self.leases.own(target.nacl_id)
        return call(**request)

    def _set(self, target: Target, cidr: str, name: str, value: int) -> None:
        """Set a number of the row of ``cidr``, if it stands."""
        self.write(
            target,
            self.table.conditional,
            call=self.table.db.update_item,
            Key=state.key(target.pk(ROW_PREFIX, cidr)),
            UpdateExpression="SET #name = :value",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#name": name},
            ExpressionAttributeValues={":value": {"N": str(value)}},
        )

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

    def _delete_entry(self, target: Target, number: int, cidr: str) -> bool | None:
        """Delete our deny of ``cidr`` at ``number``. ``True``: deleted and seen gone;
        ``False``: no such deny; ``None``: deleted but still shown."""
        entry = self._settled(target, number, gone=False)
        if entry is None or not entry.denies(cidr):
            return False
        self.write(target, self.acls.delete, target=target, rule_number=number)
        if self._settled(target, number, gone=True) is not None:
            logger.warning("deleted entry still shown", extra={"rule_number": number})
            return None
        return True

    def remove(self, target: Target, row: Row) -> int | None:
        """End the block of ``row``: mark it ended, remove its entry, then the row. The
        rule number removed, if its entry was there; while a deleted entry is still shown
        the row stays, ended, and the next sweep finishes it."""
        now, number = int(self.clock.now()), row.rule_number
        gone: bool | None = False
        if number is not None:
            if row.until > now:
                self._set(target, row.cidr, UNTIL, now)
            gone = self._delete_entry(target, number, row.cidr)
        if gone is None:
            return None
        self.write(target, self.table.delete, pk=target.pk(ROW_PREFIX, row.cidr))
        return number if gone else None

    def withdraw(self, target: Target, cidr: str) -> int | None:
        """Drop the block of ``cidr`` as it stands now; the rule number removed."""
        row = self.rows(target).get(cidr)
        return None if row is None else self.remove(target, row)

    def evict(self, target: Target, row: Row) -> engine.Done:
        line = (
            f"Evicted {row.cidr} (rule {row.rule_number}) from {target} to stay within "
            f"CAPACITY {self.config.capacity} and the range {self.config.range_text}: it was "
            f"due to expire first ({blocking.iso(row.until)})"
        )
        self.remove(target, row)
        return engine.Done(row.cidr, target.where(row.cidr, row.rule_number), line)

    def block(
        self, target: Target, cidr: str, job: engine.Job, keep: frozenset[str], done: engine.Tally
    ) -> None:
        """Record (or extend) the block of ``cidr`` and place it; tally what happened."""
        now = int(self.clock.now())
        identity = {"nacl_id": target.nacl_id, "direction": target.direction, "cidr": cidr}
        until = self.write(
            target,
            self.table.upsert,
            pk=target.pk(ROW_PREFIX, cidr),
            identity={name: {"S": value} for name, value in identity.items()},
            expires_at=now + job.ttl_seconds,
            reason=job.reason,
            finding_ids=job.finding_ids,
            now=now,
        )
        try:
            placed = self.place(target, cidr, keep, done.evicted)
        except _Refused as exc:
            self.withdraw(target, cidr)
            done.rejected.append((cidr, f"{target}: {exc}"))
            return
        except _AclGone:
            done.rejected.append((cidr, f"network ACL {target.nacl_id} was deleted"))
            return
        (number, created), iso = placed, blocking.iso(until)
        where = f"in {target} as rule {number}"
        line = f"Denied {cidr} {where} until {iso}"
        if not created:
            line = f"{cidr} was already denied {where}; blocked until {iso}"
        item = target.where(cidr, number) | {"expiresAt": iso}
        done.blocked.append(engine.Done(cidr, item, line))

    def place(
        self, target: Target, cidr: str, keep: frozenset[str], evicted: list[engine.Done]
    ) -> tuple[int, bool]:
        """Make the recorded block of ``cidr`` an entry in the range: (number, created).
        At CAPACITY, or with no free number, the block expiring first goes, except those
        of ``keep`` (the same request's addresses). Raises _Refused, _AclGone, or
        PlacementError when someone else's entries keep landing on the numbers chosen."""
        numbers, last = self.config.rule_numbers, "none"
        attempts = blocking.Attempts(self.clock, MAX_ATTEMPTS)
        for attempt in attempts:
            acl, rows = self.read(target), self.rows(target)
            row = rows.get(cidr)
            if row is None:  # under the lease, only a hand edit
                raise _Refused("its block was withdrawn while it was being placed")
            if row.rule_number is not None and acl.holds(target, row):
                return row.rule_number, False
            entries = acl.in_range(target, numbers)
            named = {r.rule_number for r in rows.values()}
            # A deny of exactly this address that no row names (its row's number lost by
            # hand, or its row deleted and the address blocked again) is taken back.
            for entry in entries:
                if entry.denies(cidr) and entry.rule_number not in named:
                    self._set(target, cidr, "rule_number", entry.rule_number)
                    self.table.delete(target.pk(ORPHAN_PREFIX, f"{entry.rule_number}#{cidr}"))
                    return entry.rule_number, False
            held = named - {row.rule_number, None}
            taken = held | {e.rule_number for e in entries}
            # The number the row names comes first: a create in flight from a holder that
            # outlived its lease then lands on the same entry.
            free = [n for n in (row.rule_number, *numbers) if n in numbers and n not in taken]
            if len(held) >= self.config.capacity or not free:
                ours = [
                    r for r in rows.values() if r.rule_number is not None and r.cidr not in keep
                ]
                if not ours:
                    foreign = sum(not _owns(rows, e) for e in entries)
                    raise _Refused(
                        f"no free rule number in the reserved range {self.config.range_text} "
                        f"and nothing this remediator may evict ({foreign} number(s) there are "
                        "held by entries it did not create)"
                    )
                evicted.append(self.evict(target, min(ours, key=lambda r: r.expiry)))
                continue  # it made room itself: re-read and re-plan at once
            if row.rule_number != free[0]:
                self._set(target, cidr, "rule_number", free[0])
            try:
                create = self.acls.create_deny
                if self.write(target, create, target=target, rule_number=free[0], cidr=cidr):
                    return free[0], True
            except _Refused:  # AWS's quota: the entry did not go in, so the block goes
                self.write(target, self.table.delete, pk=target.pk(ROW_PREFIX, cidr))
                raise
            last = f"rule {free[0]} was taken"
            logger.info("placement conflicted", extra={"cidr": cidr, "attempt": attempt + 1})
            if not attempts.wait(attempt):
                break
        raise PlacementError(
            f"{cidr} was not placed in {target} {attempts.summary()}; last conflict: {last}"
        )

    # ------------------------------------------------------------------- the sweep

    def sweep(self, target: Target, now: int, log: engine.SweepLog) -> None:
        """Reconcile one ACL direction with its rows, both ways; log what it saw."""
        # Blocks that ended (decided from blocked_until, which no TTL deletes), or that
        # the allowlist as it is now covers.
        for row in sorted(self.rows(target).values(), key=lambda r: r.cidr):
            expired = row.until <= now
            lifted = None if expired else blocking.lift_reason(row.cidr, self.config.allowlist)
            if expired or lifted:
                number = self.remove(target, row)
                rule = f" (removed rule {number})" if number is not None else ""
                line = f"Unblocked {row.cidr} in {target}{rule}: {lifted or 'its block expired'}"
                log.add("lifted" if lifted else "expired", target.where(row.cidr, number), line)
        # Over CAPACITY (it was lowered since the entries were placed).
        placed = [r for r in self.rows(target).values() if r.rule_number is not None]
        excess = max(0, len(placed) - self.config.capacity)
        for row in sorted(placed, key=lambda r: r.expiry)[:excess]:
            done = self.evict(target, row)
            log.add("evicted", done.item, done.line)
        # Recorded, unexpired blocks without their entry: re-create them.
        acl = self.read(target)
        for row in sorted(self.rows(target).values(), key=lambda r: r.cidr):
            if row.until <= now or acl.holds(target, row):
                continue
            made_room: list[engine.Done] = []
            try:
                number, created = self.place(target, row.cidr, frozenset({row.cidr}), made_room)
            except _Refused as exc:
                self.withdraw(target, row.cidr)
                line = f"Dropped the block of {row.cidr} in {target}: {exc}"
                log.add("dropped", target.where(row.cidr, None), line)
            except PlacementError as exc:
                line = f"Could not restore {row.cidr}: {exc}"
                log.add("failed", target.where(row.cidr, None), line)
            else:
                if created:
                    line = (
                        f"Re-created rule {number} for {row.cidr} in {target}: its block is "
                        "recorded but the entry was missing"
                    )
                    log.add("restored", target.where(row.cidr, number), line)
            finally:
                for done in made_room:
                    log.add("evicted", done.item, done.line)
        # Entries no row names: reported by every sweep and never touched, except a deny
        # of exactly our form left unrecorded for ORPHAN_GRACE_SECONDS.
        acl, rows = self.read(target), self.rows(target)
        for entry in acl.in_range(target, self.config.rule_numbers):
            if not _owns(rows, entry):
                self._orphan(target, entry, now, log)

    def _orphan(self, target: Target, entry: Entry, now: int, log: engine.SweepLog) -> None:
        number, cidr = entry.rule_number, entry.cidr
        orphan = target.pk(ORPHAN_PREFIX, f"{number}#{cidr}")
        ours = entry.denies(cidr) and cidr.endswith(("/32", "/128"))
        since = self.table.first_seen(orphan, now, 2 * ORPHAN_GRACE_SECONDS) if ours else None
        if since is not None and now >= since + ORPHAN_GRACE_SECONDS:
            if self._delete_entry(target, number, cidr):
                self.table.delete(orphan)
                line = (
                    f"Removed rule {number} (deny {cidr}) from {target}: it is exactly a deny "
                    "this remediator writes, inside its range, and no block has been recorded "
                    f"for it since {blocking.iso(since)}"
                )
                log.add("removedOrphan", target.where(cidr, number), line)
            return
        item: dict[str, Any] = {"networkAclId": target.nacl_id, "direction": target.direction}
        item |= {"ruleNumber": number, "cidr": cidr, "ruleAction": entry.action}
        if since is not None:
            item["removeAfter"] = blocking.iso(since + ORPHAN_GRACE_SECONDS)
        log.add(
            "foreign",
            item,
            f"Left rule {number} ({entry.action} {cidr or 'without a CIDR'}) in {target} "
            f"alone: it is inside the reserved range {self.config.range_text} but this "
            "remediator did not create it, so that number is not available to it",
        )


# --------------------------------------------------------------------------- the point


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

    def places(self, host: addresses.IPAddress, role: Role) -> Sequence[str] | str:
        """An inbound attacker in every configured direction, an outbound malicious
        destination at egress only, when egress is enabled."""
        if role is Role.INBOUND_ATTACKER:
            return self.config.directions
        return ("egress",) if "egress" in self.config.directions else EGRESS_DISABLED

    def per_request(self, place: str) -> tuple[int, str]:
        cap = self.config.capacity
        return cap, f"one request may block at most {cap} addresses per network ACL (CAPACITY)"

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
            subnets = list(dict.fromkeys(s for finding in job.findings for s in finding.subnets))
            nacl_ids = writer.acls.for_subnets(subnets)
            if not nacl_ids:
                return f"no network ACL is associated with subnet(s) {', '.join(subnets)} here"
        by_direction = self.route(job.candidates, outcome)
        for nacl_id in nacl_ids if by_direction else ():
            acl = writer.acls.read(nacl_id)
            if acl is None:
                every = dict.fromkeys(c for found in by_direction.values() for c in found)
                outcome.rejected += [(c, f"network ACL {nacl_id} does not exist") for c in every]
                continue
            outcome.resources.append(acl.arn(job.region))
            with writer.leases.holding(nacl_id):
                for direction, cidrs in by_direction.items():
                    for cidr in cidrs:
                        writer.block(
                            Target(nacl_id, direction), cidr, job, frozenset(cidrs), outcome
                        )
        return {"networkAcls": nacl_ids}

    def lift(self, cidrs: Sequence[str]) -> engine.Lifted:
        """Wherever a row names one of ``cidrs``: the row and its entry."""
        writer, lifted = Writer(self.config, self.clock), engine.Lifted()
        for target, rows in sorted(writer.load().items()):
            found = [cidr for cidr in cidrs if cidr in rows]
            if not found:
                continue
            with writer.leases.holding(target.nacl_id):
                for cidr in found:
                    number = writer.withdraw(target, cidr)
                    item = target.where(cidr, None)
                    del item["ruleNumber"]
                    lifted.unblocked.append(
                        item | {"ruleNumbers": [] if number is None else [number]}
                    )
                    lifted.found.add(cidr)
                    rule = f" (removed rule {number})" if number is not None else ""
                    lifted.actions.append(f"Unblocked {cidr} in {target}{rule}")
        return lifted

    sweep_title = "Network ACL blocklist sweep"
    sweep_keys = (
        "expired",
        "lifted",
        "removedOrphan",
        "evicted",
        "restored",
        "dropped",
        "failed",
        "foreign",
        "missingNetworkAcls",
    )

    def reconcile(self, now: int, region: str, log: engine.SweepLog) -> tuple[list[str], str]:
        """Every ACL of NACL_IDS and every ACL the table records blocks for."""
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
                            writer.sweep(target, now, log)
                    arns.append(acl.arn(region))
                    continue
            except _AclGone:
                pass  # deleted while being swept
            rows = [t.pk(ROW_PREFIX, c) for t in targets for c in writer.rows(t)]
            dropped = sum(writer.table.delete(pk) for pk in rows)
            listed = " (NACL_IDS lists it)" if nacl_id in self.config.nacl_ids else ""
            line = f"Network ACL {nacl_id} does not exist{listed}: dropped {dropped} recorded"
            log.add("missingNetworkAcls", nacl_id, f"{line} block(s) for it")
        n = {key: len(found) for key, found in log.result.items()}
        return arns, (
            f"{n['expired']} expired, {n['lifted']} lifted by the allowlist, "
            f"{n['restored']} re-created, {n['evicted']} evicted, {n['dropped']} dropped, "
            f"{n['removedOrphan']} orphan(s) removed, {n['foreign']} foreign entr(y/ies) left "
            "alone in the reserved range."
        )


apply, handle_finding, block = NaclPoint.apply, NaclPoint.handle_finding, NaclPoint.block
unblock, sweep = NaclPoint.unblock, NaclPoint.sweep
