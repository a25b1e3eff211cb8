"""Block attacker addresses in WAF IP sets, expire the blocks, tell people.

Model. The DynamoDB state table is the record of what is blocked and until when; each IP
set is kept equal to the unexpired rows of its IP version. Writers keep one ordering
rule: a row is written *before* its address is added to a set, and deleted *before* its
address is removed. The sweeper reads a set first and the table second, so any address
it finds in a set without a row really has no row (and goes), and a concurrent writer that
changes the set after that read invalidates the sweeper's LockToken (and it re-reads).

Item layout (partition key ``pk``, TTL attribute ``expires_at``)::

    pk           "ip#203.0.113.9/32" | "ip#2001:db8::1/128"
    address      the CIDR as written to the IP set
    version      4 | 6
    expires_at   epoch seconds; only ever moves later (max of existing and new)
    first_seen   epoch seconds of the first block
    last_seen    epoch seconds of the latest block
    hit_count    blocks requested for this address (findings and manual)
    finding_ids  string set of GuardDuty finding ids that named it (absent for manual)
    reason       why it was last blocked

The same table holds Powertools idempotency records (``pk`` = ``finding#<hash>``, same
``expires_at`` TTL attribute); everything that lists blocks filters on the ``ip#`` prefix.

Concurrency. IP set updates are read-modify-write guarded by WAF's LockToken: on
``WAFOptimisticLockException`` (someone else wrote in between) the loop re-reads and
re-plans, with exponential backoff and full jitter, for a bounded number of attempts,
then raises :class:`IpSetUpdateError` so Lambda retries the event or sends it to the
on-failure destination. All addresses of one IP version in one event go in one update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import Field, field_validator

from functions.common import addresses, aws, blocking, engine, state
from functions.common import finding_catalog as catalog
from functions.common.blocking import (  # noqa: F401  (re-exported: callers use logic.X)
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    DEADLINE_MARGIN_SECONDS,
    DEFAULT_BLOCK_TTL_SECONDS,
    DEFAULT_SEVERITY_THRESHOLD,
    SYSTEM_CLOCK,
    Clock,
)

ConfigError = engine.ConfigError  # raised by Config.from_env

FUNCTION_NAME = "waf_blocker"
logger = Logger(service=FUNCTION_NAME, child=True)

ROW_PREFIX = "ip#"
OUTBOUND_ONLY_AT_NACL = (
    "outbound malicious destination: WAF sees only inbound requests; the network ACL's "
    "egress side (nacl_blocklist with egress_enabled) answers it"
)
WAF_MAX_ADDRESSES_PER_SET = 10_000

# Eight writers hammering one set (tests/e2e) needed up to 14 attempts in rare cases, 1-3
# usually; ten keeps the worst-case wait under ten seconds and leaves the rest to Lambda's
# own retry of the event. Give the function a timeout of 30 s or more.
MAX_ATTEMPTS = 10
# Conditions WAF wants the caller to resolve (a fresh LockToken, an entity still being
# propagated) plus throttling and internal errors that outlasted the SDK's own retries.
RETRYABLE_WAF_ERRORS = frozenset(
    {
        "WAFOptimisticLockException",
        "WAFUnavailableEntityException",
        "WAFInternalErrorException",
        "ThrottlingException",
    }
)


class IpSetUpdateError(RuntimeError):
    """An IP set could not be updated within the retry budget; Lambda should retry."""


class _RowsChanged(Exception):
    """An eviction candidate's row changed under us; re-read and re-plan."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class IpSetRef:
    name: str
    id: str


class Config(engine.Settings):
    ipv4_set_name: str = Field(alias="IPV4_SET_NAME", min_length=1)
    ipv4_set_id: str = Field(alias="IPV4_SET_ID", min_length=1)
    ipv6_set_name: str = Field(alias="IPV6_SET_NAME", min_length=1)
    ipv6_set_id: str = Field(alias="IPV6_SET_ID", min_length=1)
    scope: str = Field(default="REGIONAL", alias="IP_SET_SCOPE")
    max_addresses_per_set: int = Field(
        default=WAF_MAX_ADDRESSES_PER_SET,
        alias="MAX_ADDRESSES_PER_SET",
        ge=1,
        le=WAF_MAX_ADDRESSES_PER_SET,
    )

    @field_validator("scope")
    @classmethod
    def _scope(cls, scope: str) -> str:
        if scope not in ("REGIONAL", "CLOUDFRONT"):
            raise ValueError(f"IP_SET_SCOPE must be REGIONAL or CLOUDFRONT, got {scope!r}")
        return scope

    def ip_set(self, version: int) -> IpSetRef:
        if version == 4:
            return IpSetRef(self.ipv4_set_name, self.ipv4_set_id)
        return IpSetRef(self.ipv6_set_name, self.ipv6_set_id)

    @property
    def waf_region(self) -> str | None:
        # CloudFront-scoped WAF resources are managed only through us-east-1.
        return "us-east-1" if self.scope == "CLOUDFRONT" else None


# --------------------------------------------------------------------------- state table


@dataclass(frozen=True, slots=True)
class Row:
    address: str
    version: int
    expires_at: int


class StateTable(state.StateTable):
    """Block rows ``ip#<cidr>`` (address, IP version, expiry) in the shared state table."""

    def record(
        self,
        cidr: str,
        version: int,
        *,
        expires_at: int,
        reason: str,
        finding_ids: Sequence[str],
        now: int,
    ) -> int:
        """Record a block; returns the row's expiry, which never moves earlier."""
        identity = {"address": {"S": cidr}, "version": {"N": str(version)}}
        return self.upsert(
            ROW_PREFIX + cidr,
            identity,
            expires_at=expires_at,
            reason=reason,
            finding_ids=finding_ids,
            now=now,
        )

    def rows(self, version: int | None = None) -> list[Row]:
        """Every block row (strongly consistent), optionally of one IP version.

        The address comes from the key, the one thing every delete and update addresses. A
        row someone edited into an unreadable shape is skipped (and logged) rather than
        failing every sweep from now on; the sweep then treats its address as unrecorded.
        """
        one = version is not None
        rows: list[Row] = []
        for item in self.scan(
            ROW_PREFIX,
            where="#version = :version" if one else "",
            ProjectionExpression="pk, #version, #expires",
            ExpressionAttributeNames={"#version": "version", "#expires": "expires_at"},
            ExpressionAttributeValues={":version": {"N": str(version)}} if one else {},
        ):
            try:
                address = item["pk"]["S"].removeprefix(ROW_PREFIX)
                rows.append(Row(address, int(item["version"]["N"]), int(item["expires_at"]["N"])))
            except (KeyError, ValueError):
                logger.warning("skipping unreadable state row", extra={"item": item})
        return rows


# --------------------------------------------------------------------------- IP sets


@dataclass(frozen=True, slots=True)
class SetChange:
    addresses: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SetWrite:
    arn: str
    change: SetChange | None


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def modify_ip_set(
    config: Config,
    ref: IpSetRef,
    plan: Callable[[list[str]], SetChange | None],
    clock: Clock,
) -> SetWrite:
    """Read the set, let ``plan`` decide its new content, write it with the LockToken.

    ``plan`` runs again on every attempt against what the set holds now, so a retry never
    writes back a stale view. ``None`` from ``plan`` means nothing to change.
    """
    waf = aws.client("wafv2", config.waf_region)
    last_error = ""
    attempts = blocking.Attempts(clock, MAX_ATTEMPTS)
    for attempt in attempts:
        try:
            response = waf.get_ip_set(Name=ref.name, Scope=config.scope, Id=ref.id)
            ip_set = response["IPSet"]
            current = _dedupe(addresses.canonical_entry(entry) for entry in ip_set["Addresses"])
            change = plan(current)
            if change is None:
                return SetWrite(ip_set["ARN"], None)
            update: dict[str, Any] = {
                "Name": ref.name,
                "Scope": config.scope,
                "Id": ref.id,
                "Addresses": change.addresses,
                "LockToken": response["LockToken"],
            }
            # UpdateIPSet replaces every mutable field; omitting it would clear it.
            if ip_set.get("Description"):
                update["Description"] = ip_set["Description"]
            waf.update_ip_set(**update)
            return SetWrite(ip_set["ARN"], change)
        except ClientError as exc:
            code = aws.error_code(exc)
            if code not in RETRYABLE_WAF_ERRORS:
                raise
            last_error = code
        except _RowsChanged as exc:
            last_error = str(exc)
        logger.info(
            "IP set write conflicted; retrying",
            extra={"ip_set": ref.name, "attempt": attempt + 1, "error": last_error},
        )
        if not attempts.wait(attempt):
            break
    raise IpSetUpdateError(
        f"IP set {ref.name} ({ref.id}) was not updated {attempts.summary()}; "
        f"last error: {last_error}"
    )


def _evict(
    table: StateTable, candidates: Sequence[str], count: int, expiries: Mapping[str, int]
) -> list[str]:
    """Drop the ``count`` candidates that expire first (rows first, per the ordering rule).

    An address in the set without a row has no recorded expiry, so it goes first.
    """
    ranked = sorted(candidates, key=lambda cidr: (expiries.get(cidr, -1), cidr))
    evicted = ranked[:count]
    for cidr in evicted:
        if not table.delete_if_unchanged(ROW_PREFIX + cidr, expiries.get(cidr)):
            raise _RowsChanged(f"row for {cidr} changed while evicting")
    return evicted


def _plan_add(
    table: StateTable, version: int, incoming: Sequence[str], cap: int
) -> Callable[[list[str]], SetChange | None]:
    def plan(current: list[str]) -> SetChange | None:
        present = set(current)
        added = [cidr for cidr in incoming if cidr not in present]
        merged = current + added
        evicted: list[str] = []
        overflow = len(merged) - cap
        if overflow > 0:
            expiries = {row.address: row.expires_at for row in table.rows(version)}
            keep = set(incoming)
            candidates = [cidr for cidr in current if cidr not in keep]
            evicted = _evict(table, candidates, overflow, expiries)
            gone = set(evicted)
            merged = [cidr for cidr in merged if cidr not in gone]
        if not added and not evicted:
            return None
        return SetChange(merged, added=added, removed=evicted, evicted=evicted)

    return plan


def _plan_remove(outgoing: Sequence[str]) -> Callable[[list[str]], SetChange | None]:
    def plan(current: list[str]) -> SetChange | None:
        leaving = set(outgoing)
        removed = [cidr for cidr in current if cidr in leaving]
        if not removed:
            return None
        return SetChange([cidr for cidr in current if cidr not in leaving], removed=removed)

    return plan


def _plan_reconcile(
    table: StateTable, version: int, now: float, cap: int
) -> Callable[[list[str]], SetChange | None]:
    # Rows evicted by an attempt that then lost the LockToken race are gone by the next
    # attempt; remembering them keeps the report honest about why they left.
    evicted: list[str] = []

    def plan(current: list[str]) -> SetChange | None:
        live = {row.address: row.expires_at for row in table.rows(version) if row.expires_at > now}
        if len(live) > cap:
            for cidr in _evict(table, list(live), len(live) - cap, live):
                evicted.append(cidr)
                del live[cidr]
        present = set(current)
        kept = [cidr for cidr in current if cidr in live]
        added = sorted(cidr for cidr in live if cidr not in present)
        removed = [cidr for cidr in current if cidr not in live]
        if not added and not removed and not evicted:
            return None
        return SetChange(kept + added, added=added, removed=removed, evicted=list(evicted))

    return plan


# --------------------------------------------------------------------------- operations


class WafPoint(engine.Point):
    """The WAF IP sets (one per IP version): inbound attackers only, capped per set."""

    function, verb, where = FUNCTION_NAME, "Blocked", "at the edge"

    def places(self, host: addresses.IPAddress, role: catalog.Role) -> Sequence[int] | str:
        """The IP set of the address's version, for an inbound attacker only."""
        return (host.version,) if role is catalog.Role.INBOUND_ATTACKER else OUTBOUND_ONLY_AT_NACL

    def per_request(self, place: int) -> tuple[int, str]:
        cap = self.config.max_addresses_per_set
        return cap, f"one request may block at most {cap} IPv{place} addresses (IP set cap)"

    def enforce(self, job: engine.Job, outcome: engine.Tally) -> dict[str, Any]:
        _block(self, job, outcome)
        return {}

    def lift(self, cidrs: Sequence[str]) -> engine.Lifted:
        """Drop the rows of ``cidrs`` and remove them from their IP sets."""
        table = StateTable(self.config.state_table)
        lifted = engine.Lifted()
        lifted.found.update(cidr for cidr in cidrs if table.delete(ROW_PREFIX + cidr))
        for version in (4, 6):
            found = [cidr for cidr in cidrs if (":" in cidr) == (version == 6)]
            if not found:
                continue
            ref = self.config.ip_set(version)
            write = modify_ip_set(self.config, ref, _plan_remove(found), self.clock)
            lifted.resources.append(write.arn)
            lifted.found.update(write.change.removed if write.change else ())
        by_version = sorted(cidrs, key=lambda cidr: ":" in cidr)  # IPv4 first, as written
        lifted.unblocked = [cidr for cidr in by_version if cidr in lifted.found]
        lifted.actions = [f"Unblocked {cidr}" for cidr in lifted.unblocked]
        return lifted

    sweep_title = "WAF blocklist sweep changed the IP sets"
    sweep_keys = (
        "expired",
        "removedExpired",
        "lifted",
        "removedUnrecorded",
        "restored",
        "evicted",
    )

    def reconcile(self, now: int, region: str, log: engine.SweepLog) -> tuple[list[str], str]:
        """Expire rows and make each IP set equal to the unexpired rows of its version.
        DynamoDB TTL deletes rows lazily (typically within days), so expiry is decided
        here from ``expires_at``, never from a row's absence alone."""
        config, table = self.config, StateTable(self.config.state_table)
        lifted: dict[str, str] = {}
        for row in table.rows():
            expired = row.expires_at <= now
            reason = None if expired else blocking.lift_reason(row.address, config.allowlist)
            pk = ROW_PREFIX + row.address
            if (expired or reason) and table.delete_if_unchanged(pk, row.expires_at):
                if reason:
                    lifted[row.address] = reason
                    log.result["lifted"].append({"address": row.address, "reason": reason})
                else:
                    log.result["expired"].append(row.address)
        changes: dict[str, list[str]] = {"removed": [], "restored": [], "evicted": []}
        arns: list[str] = []
        for version in (4, 6):
            plan = _plan_reconcile(table, version, now, config.max_addresses_per_set)
            write = modify_ip_set(config, config.ip_set(version), plan, self.clock)
            arns.append(write.arn)
            if write.change is not None:
                changes["restored"] += write.change.added
                changes["evicted"] += write.change.evicted
                evicted = set(write.change.evicted)
                changes["removed"] += [c for c in write.change.removed if c not in evicted]
        expired_rows = set(log.result["expired"])
        removed = {
            kind: [c for c in changes["removed"] if test(c)]
            for kind, test in (
                ("expired", expired_rows.__contains__),
                ("lifted", lifted.__contains__),
                ("unrecorded", lambda c: c not in expired_rows and c not in lifted),
            )
        }
        for cidr in removed["expired"]:
            log.add("removedExpired", cidr, f"Unblocked {cidr}: its block expired")
        log.lines += [f"Unblocked {cidr}: {lifted[cidr]}" for cidr in removed["lifted"]]
        for cidr in removed["unrecorded"]:
            log.add("removedUnrecorded", cidr, f"Removed {cidr}: no block is recorded for it")
        for cidr in changes["restored"]:
            log.add("restored", cidr, f"Re-added {cidr}: its block is recorded but was missing")
        for cidr in changes["evicted"]:
            log.add("evicted", cidr, f"Evicted {cidr}: the IP set was over its cap")
        summary = (
            f"{len(removed['expired'])} expired, {len(removed['lifted'])} lifted by the "
            f"allowlist, {len(removed['unrecorded'])} unrecorded removed, "
            f"{len(changes['restored'])} re-added, {len(changes['evicted'])} evicted."
        )
        return arns, summary


def _block(point: WafPoint, job: engine.Job, outcome: engine.Tally) -> None:
    config, clock = point.config, point.clock
    now = int(clock.now())
    expires_at = now + job.ttl_seconds
    table = StateTable(config.state_table)
    cap = config.max_addresses_per_set
    for version, cidrs in sorted(point.route(job.candidates, outcome).items()):
        expiries = [
            table.record(
                cidr,
                version,
                expires_at=expires_at,
                reason=job.reason,
                finding_ids=job.finding_ids,
                now=now,
            )
            for cidr in cidrs
        ]
        ref = config.ip_set(version)
        write = modify_ip_set(config, ref, _plan_add(table, version, cidrs, cap), clock)
        outcome.resources.append(write.arn)
        for cidr, expiry in zip(cidrs, expiries, strict=True):
            until = blocking.iso(expiry)
            line = f"Blocked {cidr} in WAF IP set {ref.name} until {until}"
            outcome.blocked.append(engine.Done(cidr, {"address": cidr, "expiresAt": until}, line))
        for cidr in write.change.evicted if write.change else ():
            line = (
                f"Evicted {cidr} (it was due to expire first) to keep the IP set within "
                f"{cap} addresses"
            )
            outcome.evicted.append(engine.Done(cidr, cidr, line))


apply, handle_finding, block = WafPoint.apply, WafPoint.handle_finding, WafPoint.block
unblock, sweep = WafPoint.unblock, WafPoint.sweep
