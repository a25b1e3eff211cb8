"""The blocking engine: one flow for every enforcement point.

event -> findings (:mod:`functions.common.intake`, through :func:`blocking.dispatch`) ->
candidate addresses, each with the role of the remote party -> decisions (allowlist,
global addresses only, the roles the point answers; the catalog and severity threshold
decided the findings already) -> state rows with expiry -> the enforcement point ->
report. The point's own ``sweep`` reconciles its rows and what it holds, both ways.

An **enforcement point** is a :class:`Point`: what it holds and how it adds and removes
(its ``enforce``), its capacity and eviction (inside ``enforce``), and the words its
reports use. ``waf_blocker`` (WAF IP sets: inbound attackers only) and ``nacl_blocker``
(network ACL entries: inbound through ingress, outbound through egress when enabled)
each define one in their ``logic`` module; a third (a Network Firewall rule group, say)
is one more ``logic`` module with its ``Point`` and its Terraform module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Self

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from functions.common import addresses, report
from functions.common.blocking import (
    DEFAULT_BLOCK_TTL_SECONDS,
    DEFAULT_SEVERITY_THRESHOLD,
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    SYSTEM_CLOCK,
    BlockRequest,
    Clock,
    GuardDutyFindingEvent,
    Origin,
    UnblockRequest,
    handle_guardduty,
    report_severity,
)
from functions.common.finding_catalog import Role
from functions.common.intake import Batch, Finding


class ConfigError(ValueError):
    """The function's environment is wrong: a deployment bug, not bad input."""


@dataclass(frozen=True, slots=True)
class Done:
    """One thing a request did at a point: the address, its item in the result, and the
    report's line for it."""

    address: str
    item: Any
    line: str


@dataclass
class Tally:
    """What one request did at a point: ``blocked`` and ``evicted`` as :class:`Done`
    items, ``rejected`` as (address, why), ``resources`` what was written, for the report."""

    blocked: list[Done] = field(default_factory=list)
    evicted: list[Done] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)

    def result(self, **extra: Any) -> dict[str, Any]:
        """The result of a processed request."""
        return {
            "status": "processed",
            **extra,
            "blocked": [done.item for done in self.blocked],
            "rejected": [{"address": a, "reason": r} for a, r in self.rejected],
            "evicted": [done.item for done in self.evicted],
        }

    def actions(self) -> list[str]:
        lines = [done.line for done in self.blocked]
        lines += [f"Did not block {address}: {reason}" for address, reason in self.rejected]
        return lines + [done.line for done in self.evicted]

    @property
    def addresses_blocked(self) -> int:
        return len({done.address for done in self.blocked})

    def tally(self, verb: str, ttl_seconds: int) -> str:
        return (
            f"{self.addresses_blocked} {verb.lower()} for {ttl_seconds} s, "
            f"{len(self.rejected)} rejected, {len(self.evicted)} evicted."
        )


Candidate = tuple[addresses.IPAddress, Role]


@dataclass(frozen=True, slots=True)
class Job:
    """One request to a point: the candidates to block, for how long and why."""

    findings: Sequence[Finding]  # empty for an operator's request
    candidates: Sequence[Candidate]
    ttl_seconds: int
    reason: str
    finding_ids: Sequence[str]
    region: str


class Point(ABC):
    """An enforcement point, for one invocation (its configuration and clock)."""

    function: ClassVar[str]
    # How reports name what happened: "Blocked ... at the edge", "Denied ... in network ACLs".
    verb: ClassVar[str]
    where: ClassVar[str]

    def __init__(self, config: Any, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.logger = Logger(service=self.function, child=True)

    @abstractmethod
    def enforce(self, job: Job, outcome: Tally) -> dict[str, Any] | str:
        """Record the blocks of :meth:`route`'s decisions and write them; the extra result
        fields, or (a string) why the request has nowhere to go at all."""

    @abstractmethod
    def places(self, host: addresses.IPAddress, role: Role) -> Sequence[Hashable] | str:
        """Where this point writes ``host`` for ``role`` (its IP sets, its ACL directions),
        or why it does not answer that role."""

    @abstractmethod
    def per_request(self, place: Any) -> tuple[int, str]:
        """At most how many addresses one request may write to ``place``, and why."""

    def route(self, candidates: Sequence[Candidate], outcome: Tally) -> dict[Any, list[str]]:
        """The decisions: each candidate allowed (allowlist, global addresses only) and
        answered by this point for its role, as CIDRs per place, within
        :meth:`per_request`; everything else rejected with its reason."""
        by_place: dict[Any, list[str]] = {}
        for host, role in candidates:
            decision = addresses.classify(host, self.config.allowlist)
            where = self.places(host, role) if decision.allowed else decision.reason
            if isinstance(where, str):
                outcome.rejected.append((str(host), where))
                continue
            for place in where:
                by_place.setdefault(place, []).append(addresses.canonical_cidr(host))
        over: list[tuple[str, str]] = []
        for place, found in by_place.items():
            cidrs = list(dict.fromkeys(found))
            limit, why = self.per_request(place)
            over += [(cidr, why) for cidr in cidrs[limit:]]
            by_place[place] = cidrs[:limit]
        outcome.rejected.extend(dict.fromkeys(over))
        return by_place

    # ------------------------------------------------------------------- entry points
    # Each logic module binds these to its names (``apply = WafPoint.apply``), so that
    # :func:`blocking.dispatch` calls every point the same way.

    @classmethod
    def apply(
        cls, findings: Sequence[Finding], origin: Origin, config: Any, clock: Clock
    ) -> dict[str, Any]:
        """Block the candidates of decided findings (a GuardDuty finding, a Block IP action)."""
        return apply_findings(cls(config, clock), findings, origin)

    @classmethod
    def block(
        cls, request: BlockRequest, config: Any, clock: Clock, *, account: str, region: str
    ) -> dict[str, Any]:
        """An operator's block: the same decisions as findings."""
        return block_request(cls(config, clock), request, account=account, region=region)

    @classmethod
    def handle_finding(
        cls,
        event: GuardDutyFindingEvent,
        config: Any,
        clock: Clock = SYSTEM_CLOCK,
        lambda_context: LambdaContext | None = None,
    ) -> dict[str, Any]:
        """A GuardDuty finding: decided by the catalog and threshold, applied once."""
        point = cls(config, clock)
        return handle_guardduty(
            event,
            config,
            clock,
            apply=cls.apply,
            logger=point.logger,
            lambda_context=lambda_context,
            refuse=point.refuse,
        )

    @classmethod
    def unblock(
        cls, request: UnblockRequest, config: Any, clock: Clock, *, account: str, region: str
    ) -> dict[str, Any]:
        """An operator's unblock of addresses, wherever this point holds them."""
        return unblock_request(cls(config, clock), request, account=account, region=region)

    @classmethod
    def sweep(cls, config: Any, clock: Clock, *, account: str, region: str) -> dict[str, Any]:
        """Expire blocks, lift what the allowlist now covers and reconcile the point with
        its rows both ways (:meth:`reconcile`); report what changed, if anything did."""
        point = cls(config, clock)
        log = SweepLog.of(*point.sweep_keys)
        resources, summary = point.reconcile(int(clock.now()), region, log)
        return log.finish(
            point,
            title=point.sweep_title,
            summary=summary,
            account=account,
            region=region,
            resources=resources,
        )

    @abstractmethod
    def lift(self, cidrs: Sequence[str]) -> Lifted:
        """Remove the blocks of ``cidrs`` (rows and what the point holds)."""

    # The sweep's result keys and report title.
    sweep_keys: ClassVar[tuple[str, ...]]
    sweep_title: ClassVar[str]

    @abstractmethod
    def reconcile(self, now: int, region: str, log: SweepLog) -> tuple[list[str], str]:
        """One sweep's work, logged in ``log``; the ARNs of what it swept and the report's
        one-line summary."""

    def refuse(self, finding: Finding) -> str | None:
        """Why this point cannot take ``finding`` at all (before any write), or None."""
        return None

    def publish(self, **fields: Any) -> bool:
        """Send the remediation report, if a topic or a report bus is configured; whether
        one was sent."""
        topic = self.config.notify_topic_arn
        if not report.wanted(topic):
            return False
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        report.publish(topic, report.remediation_report(function=self.function, now=now, **fields))
        return True


def parse_hosts(texts: Sequence[str], rejected: list[tuple[str, str]]) -> list[addresses.IPAddress]:
    """The addresses of an operator's request; each one that is not, rejected with why."""
    hosts: list[addresses.IPAddress] = []
    for text in texts:
        try:
            hosts.append(addresses.parse_host(text))
        except ValueError as exc:
            rejected.append((text, str(exc)))
    return hosts


def apply_findings(point: Point, findings: Sequence[Finding], origin: Origin) -> dict[str, Any]:
    """Block the candidates of decided findings at ``point``; report and return it."""
    batch = Batch.of(findings)
    outcome = Tally()
    outcome.rejected.extend(batch.rejected)
    if not batch.candidates and not outcome.rejected:
        point.logger.info("nothing to block in the finding(s)", extra=origin.ids)
        return outcome.result(**origin.ids, notified=False)
    ttl = point.config.block_ttl_seconds
    job = Job(findings, batch.candidates, ttl, origin.reason, batch.finding_ids, origin.region)
    extra = point.enforce(job, outcome)
    if isinstance(extra, str):
        point.logger.warning("finding rejected", extra={**origin.ids, "reason": extra})
        return {"status": "rejected", **origin.ids, "reason": extra}
    ids = batch.finding_ids
    notified = point.publish(
        title=f"{point.verb} {outcome.addresses_blocked} address(es) {point.where}: {batch.types}",
        severity=report_severity(batch.severity),
        summary=(
            f"{origin.reason} (severity {batch.severity}) named {len(batch.candidates)} remote "
            f"address(es): {outcome.tally(point.verb, ttl)}"
        ),
        actions=outcome.actions(),
        account=origin.account,
        region=origin.region,
        resources=[*outcome.resources, *(f.arn for f in findings if f.arn)],
        finding_id=ids[0] if len(ids) == 1 else None,
    )
    point.logger.info(
        "finding(s) processed",
        extra={
            **origin.ids,
            "blocked": outcome.addresses_blocked,
            "rejected": len(outcome.rejected),
        },
    )
    return outcome.result(**origin.ids, **extra, notified=notified)


def block_request(
    point: Point, request: BlockRequest, *, account: str, region: str
) -> dict[str, Any]:
    """An operator's block: the same decisions as findings, inbound attackers."""
    outcome = Tally()
    hosts = parse_hosts(request.addresses, outcome.rejected)
    ttl = request.ttl_seconds or point.config.block_ttl_seconds
    candidates = [(host, Role.INBOUND_ATTACKER) for host in hosts]
    extra = point.enforce(Job((), candidates, ttl, request.reason, (), region), outcome)
    if isinstance(extra, str):
        point.logger.warning("request rejected", extra={"reason": extra})
        return {"status": "rejected", "action": "block", "reason": extra}
    notified = point.publish(
        title=f"{point.verb} {outcome.addresses_blocked} address(es) {point.where} on request",
        severity="INFO",
        summary=f"Manual block ({request.reason}): {outcome.tally(point.verb, ttl)}",
        actions=outcome.actions(),
        account=account,
        region=region,
        resources=outcome.resources,
    )
    return outcome.result(action="block", **extra, notified=notified)


@dataclass
class Lifted:
    """What an operator's unblock lifted at a point."""

    unblocked: list[Any] = field(default_factory=list)  # the result's items
    found: set[str] = field(default_factory=set)  # the addresses that were blocked
    actions: list[str] = field(default_factory=list)  # report lines
    resources: list[str] = field(default_factory=list)


def unblock_request(
    point: Point, request: UnblockRequest, *, account: str, region: str
) -> dict[str, Any]:
    """An operator's unblock: lift the addresses wherever the point holds them; report."""
    rejected: list[tuple[str, str]] = []
    hosts = parse_hosts(request.addresses, rejected)
    cidrs = list(dict.fromkeys(addresses.canonical_cidr(host) for host in hosts))
    lifted = point.lift(cidrs)
    not_blocked = [cidr for cidr in cidrs if cidr not in lifted.found]
    lines = [*lifted.actions, *(f"{cidr} was not blocked" for cidr in not_blocked)]
    lines += [f"Did not unblock {address}: {reason}" for address, reason in rejected]
    count = len(lifted.found)
    notified = point.publish(
        title=f"Unblocked {count} address(es) {point.where} on request",
        severity="INFO",
        summary=f"Manual unblock ({request.reason}): {count} unblocked.",
        actions=lines,
        account=account,
        region=region,
        **({"resources": lifted.resources} if lifted.resources else {}),
    )
    return {
        "status": "processed",
        "action": "unblock",
        "unblocked": lifted.unblocked,
        "notBlocked": not_blocked,
        "rejected": [{"address": a, "reason": r} for a, r in rejected],
        "notified": notified,
    }


@dataclass
class SweepLog:
    """What one sweep did and saw: its result lists by key and its report lines, together."""

    result: dict[str, list[Any]]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, *keys: str) -> SweepLog:
        return cls({key: [] for key in keys})

    def add(self, key: str, item: Any, line: str) -> None:
        self.result[key].append(item)
        self.lines.append(line)

    def finish(self, point: Point, *, title: str, summary: str, **where: Any) -> dict[str, Any]:
        """Report the sweep if it did or saw anything (``where``: account, region,
        resources); its result."""
        notified = bool(self.lines) and point.publish(
            title=title, severity="INFO", summary=summary, actions=self.lines, **where
        )
        point.logger.info("sweep finished", extra={"lines": len(self.lines)})
        return {"status": "swept", **self.result, "notified": notified}


# --------------------------------------------------------------------------- configuration


def _named(name: str, message: str) -> str:
    return message if message.startswith(name) else f"{name}: {message}"


def _range(field: FieldInfo) -> str:
    """A bounded setting's range from its ``ge`` and ``le``: "low..high", or one side."""
    bound = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le") if hasattr(m, k)}
    if "ge" in bound and "le" in bound:
        return f"{bound['ge']}..{bound['le']}"
    return f"at least {bound['ge']}" if "ge" in bound else f"at most {bound.get('le')}"


class Settings(BaseModel):
    """The settings every point has, from the environment (one pydantic model per
    function: its ``Config`` subclasses this). Fields are read by their variable name
    (the alias); an empty variable counts as unset; every error names its variable."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    state_table: str = Field(alias="STATE_TABLE", min_length=1)
    allowlist: tuple[IPv4Network | IPv6Network, ...] = Field(default=(), alias="ALLOWLIST_CIDRS")
    block_ttl_seconds: int = Field(
        default=DEFAULT_BLOCK_TTL_SECONDS,
        alias="BLOCK_TTL_SECONDS",
        ge=MIN_TTL_SECONDS,
        le=MAX_TTL_SECONDS,
    )
    severity_threshold: float = Field(
        default=DEFAULT_SEVERITY_THRESHOLD, alias="SEVERITY_THRESHOLD", ge=0, le=10
    )
    notify_topic_arn: str = Field(default="", alias="NOTIFY_TOPIC_ARN")
    block_ip_action_arn: str = Field(default="", alias="BLOCK_IP_ACTION_ARN")

    @field_validator("allowlist", mode="before")
    @classmethod
    def _allowlist(cls, raw: Any) -> Any:
        return addresses.parse_allowlist(raw) if isinstance(raw, str) else raw

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """The configuration, or :class:`ConfigError` naming the variable that is wrong."""
        fields = {f.alias: f for f in cls.model_fields.values() if f.alias}
        values = {name: env[name].strip() for name in fields if env.get(name, "").strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing":
                message = f"environment variable {name} is required"
            elif error["type"] in {"int_parsing", "float_parsing"}:
                message = f"{name} must be a number, got {values[name]!r}"
            elif error["type"] in {"greater_than_equal", "less_than_equal"}:
                message = f"{name} must be {_range(fields[name])}, got {values[name]}"
            elif error["type"] == "value_error":
                message = _named(name, str(error["ctx"]["error"]))
            else:
                message = _named(name, f"{error['msg']}, got {values.get(name)!r}")
            raise ConfigError(message) from None
