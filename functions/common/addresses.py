"""Attacker addresses: where GuardDuty puts them, which ones may be blocked, and how to
write them for WAF and NACL entries.

Pure functions only (no AWS, no logging), so they run the same in every remediator and in
property-based tests.

Decisions, each tested in ``tests/unit/test_addresses.py``:

- IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are the IPv4 host itself; they are
  normalised to IPv4 so that the block lands in the IPv4 set, where that traffic arrives.
- 6to4 addresses (``2002::/16``) are judged by the IPv4 address they embed as well as by
  themselves: ``2002:a00:1::1`` tunnels to ``10.0.0.1`` and is never blocked. Teredo
  (``2001::/32``) is not globally reachable and is never blocked.
- Special-purpose ranges are rejected from explicit tables first (so the reason names the
  range, and the outcome does not depend on the Python patch release, whose
  ``is_global`` has changed over time), then anything ``ipaddress`` does not consider
  global is rejected too.
- Only single hosts are blocked; an operator's ``/24`` is rejected rather than silently
  widened or narrowed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from functions.common import finding_catalog
from functions.common.finding_catalog import ActionKind, Entry, Role

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FoundAddress(NamedTuple):
    address: IPAddress
    where: str
    role: Role = Role.INBOUND_ATTACKER


class Decision(NamedTuple):
    allowed: bool
    reason: str


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Order matters: the first matching row names the reason.
_SPECIAL_RANGES: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("private address (RFC 1918)", _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("unique local address (RFC 4193)", _networks("fc00::/7")),
    ("site-local address (deprecated by RFC 3879)", _networks("fec0::/10")),
    ("shared address space for carrier-grade NAT (RFC 6598)", _networks("100.64.0.0/10")),
    (
        "documentation range (RFC 5737, RFC 3849, RFC 9637)",
        _networks(
            "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"
        ),
    ),
    ("benchmarking range (RFC 2544, RFC 5180)", _networks("198.18.0.0/15", "2001:2::/48")),
    ("IETF protocol assignment (RFC 6890)", _networks("192.0.0.0/24")),
    ("Teredo tunnelling address (RFC 4380)", _networks("2001::/32")),
    ("NAT64 translation prefix (RFC 6052, RFC 8215)", _networks("64:ff9b::/96", "64:ff9b:1::/48")),
)

_REMOTE_IP_FIELDS = ("ipAddressV4", "ipAddressV6")


def normalise(address: IPAddress) -> IPAddress:
    """The address a packet from ``address`` arrives as.

    IPv4-mapped IPv6 becomes IPv4, and an IPv6 zone (``%eth0``) is dropped: it names one of
    the observer's interfaces, not part of the remote address, and WAF rejects it.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(address.packed)
    return address


def canonical_cidr(address: IPAddress) -> str:
    """The host CIDR WAF IP sets and NACL entries take: ``/32`` for IPv4, ``/128`` for IPv6."""
    return f"{address}/{address.max_prefixlen}"


def canonical_entry(entry: str) -> str:
    """An IP set entry as this package writes it, so entries compare as text.

    WAF keeps entries as they were written; someone else may have written
    ``2001:DB8:0:0::1/128`` by hand.
    """
    return str(ipaddress.ip_network(entry.strip(), strict=False))


def parse_host(text: object) -> IPAddress:
    """One host address from an operator, with or without a host-length prefix."""
    if not isinstance(text, str):
        raise ValueError(f"expected an IP address string, got {type(text).__name__}")
    candidate = text.strip()
    try:
        network = ipaddress.ip_network(candidate, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if network.num_addresses != 1:
        raise ValueError(
            f"{text!r} is a /{network.prefixlen} network; only single addresses can be blocked"
        )
    return normalise(network.network_address)


def _remote_ip_details(
    action: Mapping[str, Any], kind: ActionKind, entry: Entry
) -> list[tuple[str, Role, Any]]:
    """``(path, role, remoteIpDetails)`` for the action object of ``kind``."""
    key = kind.action_key
    body = action.get(key)
    if not isinstance(body, Mapping):
        return []
    base = f"service.action.{key}"
    role = entry.role(body.get("connectionDirection"))
    if role is None:
        # An outbound brute force makes our instance the attacker and the remote address
        # its victim; an unknown direction says nothing.
        return []
    if kind is ActionKind.PORT_PROBE:
        details = body.get("portProbeDetails")
        if not isinstance(details, list):
            return []
        return [
            (
                f"{base}.portProbeDetails[{index}].remoteIpDetails",
                role,
                detail.get("remoteIpDetails"),
            )
            for index, detail in enumerate(details)
            if isinstance(detail, Mapping)
        ]
    return [(f"{base}.remoteIpDetails", role, body.get("remoteIpDetails"))]


def read_address(value: str) -> IPAddress:
    """An address exactly as an AWS service writes it; anything else is malformed.

    GuardDuty and Security Hub never pad an address, so surrounding whitespace means the
    event was not written by them (or was mangled on the way): rejected, not tidied up.
    """
    if value != value.strip():
        raise ValueError(f"{value!r} has surrounding whitespace; AWS never sends that")
    try:
        return normalise(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value[:64]!r} is not an IP address") from None


class Extraction(NamedTuple):
    found: list[FoundAddress]
    rejected: list[tuple[str, str]]


def collect(candidates: Iterable[tuple[str, Role, object]]) -> Extraction:
    """Addresses from ``(path, role, value)`` triples: normalised, first seen first, and a
    reason for every value that is a string but not an address."""
    found: dict[tuple[IPAddress, Role], str] = {}
    rejected: list[tuple[str, str]] = []
    for path, role, value in candidates:
        if not isinstance(value, str):
            continue
        try:
            address = read_address(value)
        except ValueError as exc:
            rejected.append((value[:64], f"{path}: {exc}"))
            continue
        found.setdefault((address, role), path)
    return Extraction(
        [FoundAddress(address, where, role) for (address, role), where in found.items()],
        rejected,
    )


def extract(finding_detail: object) -> Extraction:
    """Every remote address a catalog finding carries, with its role, and the values that
    were not addresses, each with a reason.

    A type outside the catalog, or a missing or odd-shaped field, yields nothing rather
    than an error: findings come from outside.
    """
    if not isinstance(finding_detail, Mapping):
        return Extraction([], [])
    item = finding_catalog.entry(finding_detail.get("type"))
    service = finding_detail.get("service")
    action = service.get("action") if isinstance(service, Mapping) else None
    if item is None or item.kind is None or not isinstance(action, Mapping):
        return Extraction([], [])
    return collect(
        (f"{path}.{field}", role, details.get(field))
        for path, role, details in _remote_ip_details(action, item.kind, item)
        if isinstance(details, Mapping)
        for field in _REMOTE_IP_FIELDS
    )


def extract_addresses(finding_detail: object) -> list[FoundAddress]:
    """The addresses of :func:`extract`, without the rejections."""
    return extract(finding_detail).found


def _judge(address: IPAddress, allowlist: Iterable[IPNetwork]) -> Decision:
    for network in allowlist:
        if address in network:
            return Decision(False, f"allow-listed by {network}")
    if address.is_unspecified:
        return Decision(False, "unspecified address")
    if address.is_loopback:
        return Decision(False, "loopback address")
    if address.is_link_local:
        return Decision(False, "link-local address")
    if address.is_multicast:
        return Decision(False, "multicast address")
    for reason, networks in _SPECIAL_RANGES:
        if any(address in network for network in networks):
            return Decision(False, reason)
    if address.is_reserved:
        return Decision(False, "reserved address")
    if not address.is_global:
        return Decision(False, "not globally reachable (IANA special-purpose registry)")
    return Decision(True, "global unicast address")


def classify(address: IPAddress, allowlist: Iterable[IPNetwork]) -> Decision:
    """May ``address`` be blocked? Never for allow-listed or non-global addresses."""
    allowlist = tuple(allowlist)
    host = normalise(address)
    decision = _judge(host, allowlist)
    if not decision.allowed:
        return decision
    tunnelled = host.sixtofour if isinstance(host, ipaddress.IPv6Address) else None
    if tunnelled is not None:
        embedded = _judge(tunnelled, allowlist)
        if not embedded.allowed:
            return Decision(False, f"6to4 address embedding {tunnelled}: {embedded.reason}")
    return decision


def parse_allowlist(text: str) -> tuple[IPNetwork, ...]:
    """CIDRs from a JSON list (``["192.0.2.0/24"]``) or comma/space separated text.

    Plain addresses become host networks. Host bits set (``10.0.0.1/8``) is an error, not a
    silent widening: the operator meant something and should say which.
    """
    stripped = text.strip()
    if not stripped:
        return ()
    entries: list[object]
    if stripped[0] in '[{"':
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"allowlist is not valid JSON: {exc.msg}") from None
        if not isinstance(decoded, list):
            raise ValueError("allowlist JSON must be a list of CIDR strings")
        entries = decoded
    else:
        entries = [part for part in stripped.replace(",", " ").split() if part]
    networks: list[IPNetwork] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"allowlist entry {entry!r} is not a string")
        try:
            network = ipaddress.ip_network(entry.strip(), strict=True)
        except ValueError as exc:
            raise ValueError(f"allowlist entry {entry!r} is not a CIDR: {exc}") from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


# Every range in which :func:`classify` may refuse an address, as a superset: the explicit
# tables above, what ``ipaddress`` does not call global, multicast, reserved and IPv6
# outside the global unicast block 2000::/3 (with the 6to4 block, judged by what it
# embeds). A host outside all of them is always blockable, which lets a caller that judges
# many addresses (a threat feed) skip :func:`classify` for them; anything inside is still
# judged by :func:`classify` or :func:`classify_network`.
EXCLUDED_RANGES: tuple[IPNetwork, ...] = (
    *_networks(
        "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/3", "4000::/2", "8000::/1", "2001::/23", "2002::/16",
    ),
    *(network for _, networks in _SPECIAL_RANGES for network in networks),
)  # fmt: skip


def classify_network(network: IPNetwork, allowlist: Iterable[IPNetwork]) -> Decision:
    """May every address of ``network`` be listed as a threat? A single host is judged by
    :func:`classify`; a wider range is refused when it overlaps the allowlist or any of
    :data:`EXCLUDED_RANGES` at all (a threat range never reaches into a private or
    special-purpose block, even where part of that block would be global)."""
    if network.num_addresses == 1:
        return classify(network.network_address, allowlist)
    for allowed in allowlist:
        if allowed.version == network.version and network.overlaps(allowed):
            return Decision(False, f"range overlapping allow-listed {allowed}")
    for excluded in EXCLUDED_RANGES:
        if excluded.version == network.version and network.overlaps(excluded):
            probe = max(network.network_address, excluded.network_address)
            decision = classify(probe, ())
            reason = decision.reason if not decision.allowed else f"special-purpose {excluded}"
            return Decision(False, f"range containing {reason}")
    return Decision(True, "global unicast range")
