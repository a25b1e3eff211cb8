"""Validate, normalise, deduplicate and collapse a feed's candidate entries, then apply the
caps GuardDuty sets on a list.

Every entry is judged by the blockers' rules (``functions.common.addresses``): a host by
:func:`~functions.common.addresses.classify`, a range by
:func:`~functions.common.addresses.classify_network`, with the same allowlist. Each
refusal is counted under its reason. The fast path (most entries) parses with
``inet_pton`` and checks the entry against :data:`~functions.common.addresses.EXCLUDED_RANGES`
with a binary search; anything that fast path does not accept outright goes through
``ipaddress`` and the classify functions, so the outcome is theirs (tested to agree).

Collapsing works on integer intervals per address family: overlapping and adjacent ranges
merge, and each merged interval is written as the fewest CIDR blocks. A merged block
keeps the feed position of its earliest entry, which is what the ``truncate`` cap policy
keeps first.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from functions.common.addresses import EXCLUDED_RANGES, IPNetwork, classify_network, normalise

MALFORMED = "malformed address or CIDR"
HOST_BITS = "CIDR with host bits set"
DUPLICATE = "duplicate"
COLLAPSED = "collapsed into an overlapping or adjacent range"

# GuardDuty's quotas: https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_limits.html
THREAT_LIST_MAX_ENTRIES = 250_000
THREAT_LIST_MAX_BYTES = 35 * 1024 * 1024
TRUSTED_LIST_MAX_ENTRIES = 2_000
CAP_POLICIES = ("refuse", "truncate")

_BITS = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_MAPPED = (0xFFFF << 32, (0xFFFF << 32) | 0xFFFFFFFF)


def _intervals(networks: Iterable[IPNetwork], version: int) -> tuple[list[int], list[int]]:
    """Merged ``[start, end]`` intervals of ``networks`` of one family, as two sorted lists."""
    spans = sorted(
        (int(n.network_address), int(n.broadcast_address)) for n in networks if n.version == version
    )
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


@dataclass
class Normalised:
    """The list to write, in address order, with each block's earliest feed position."""

    entries: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    accepted: int = 0  # valid entries before deduplication and collapsing

    def text(self) -> str:
        return "".join(f"{entry}\n" for entry in self.entries)


class _Judge:
    """Decides each entry, quickly when it is plainly outside every excluded range."""

    def __init__(self, allowlist: Sequence[IPNetwork]) -> None:
        self.allowlist = tuple(allowlist)
        ranges = (*EXCLUDED_RANGES, *self.allowlist)
        self.excluded = {version: _intervals(ranges, version) for version in (4, 6)}

    def judge(self, text: str) -> tuple[int, int, int] | str:
        """``(version, start, prefix)`` of an accepted entry, or the reason it is refused."""
        address, slash, length = text.partition("/")
        if ":" in address:
            version, bits, family = 6, 128, socket.AF_INET6
        else:
            version, bits, family = 4, 32, socket.AF_INET
        try:
            packed = socket.inet_pton(family, address)
        except OSError:
            return self._slow(text)
        if slash:
            if not (length.isascii() and length.isdigit()) or (length[0] == "0" and length != "0"):
                return self._slow(text)
            prefix = int(length)
            if prefix > bits:
                return self._slow(text)
        else:
            prefix = bits
        start = int.from_bytes(packed, "big")
        size = 1 << (bits - prefix)
        if start & (size - 1):
            return HOST_BITS
        starts, ends = self.excluded[version]
        index = bisect.bisect_left(ends, start)
        if index == len(starts) or starts[index] > start + size - 1:
            return version, start, prefix
        return self._slow(text)

    def _slow(self, text: str) -> tuple[int, int, int] | str:
        try:
            network = ipaddress.ip_network(text)
        except ValueError:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                return MALFORMED
            return HOST_BITS
        decision = classify_network(network, self.allowlist)
        if not decision.allowed:
            return decision.reason
        if network.num_addresses == 1:
            host = normalise(network.network_address)
            network = ipaddress.ip_network(host)
        return network.version, int(network.network_address), network.prefixlen


def _blocks(start: int, end: int, bits: int) -> Iterable[tuple[int, int]]:
    """The fewest CIDR blocks ``(start, prefix)`` covering ``[start, end]``."""
    while start <= end:
        alignment = (start & -start).bit_length() - 1 if start else bits
        size = min(alignment, (end - start + 1).bit_length() - 1)
        yield start, bits - size
        start += 1 << size


def normalise_entries(
    candidates: Iterable[str],
    allowlist: Sequence[IPNetwork] = (),
    counts: Counter[str] | None = None,
) -> Normalised:
    """Judge, deduplicate and collapse ``candidates`` (in feed order)."""
    result = Normalised(counts=Counter(counts or {}))
    judge = _Judge(allowlist).judge
    tally = result.counts
    spans: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
    append = {4: spans[4].append, 6: spans[6].append}
    position = 0
    for candidate in candidates:
        verdict = judge(candidate.strip())
        if isinstance(verdict, str):
            tally[verdict] += 1
            continue
        version, start, prefix = verdict
        # (start, prefix) sorts a block before the smaller blocks starting where it does.
        append[version]((start, prefix, position))
        position += 1
    result.accepted = position
    for version in (4, 6):
        _collapse(spans[version], _BITS[version], result)
    return result


def _collapse(spans: list[tuple[int, int, int]], bits: int, result: Normalised) -> None:
    """Merge one family's sorted blocks into intervals and write each as fewest blocks."""
    spans.sort()
    family = _FAMILY[4 if bits == 32 else 6]
    width = bits // 8
    ntop = socket.inet_ntop
    out, where_out = result.entries, result.positions
    duplicates = distinct = written = 0
    # The interval being merged: its bounds, earliest feed position, and its prefix while it
    # is still one block as listed (-1 once two blocks have merged into it).
    low = high = first = single = -1
    previous = (-1, -1)

    def emit() -> int:
        if single >= 0:
            text = ntop(family, low.to_bytes(width, "big"))
            out.append(text if single == bits else f"{text}/{single}")
            where_out.append(first)
            return 1
        count = 0
        for block_start, prefix in _blocks(low, high, bits):
            text = ntop(family, block_start.to_bytes(width, "big"))
            out.append(text if prefix == bits else f"{text}/{prefix}")
            where_out.append(first)
            count += 1
        return count

    for start, prefix, where in spans:
        if (start, prefix) == previous:
            duplicates += 1
            continue
        previous = (start, prefix)
        distinct += 1
        end = start + (1 << (bits - prefix)) - 1
        if low >= 0 and start <= high + 1:
            high = max(high, end)
            first = min(first, where)
            single = -1
            continue
        if low >= 0:
            written += emit()
        low, high, first, single = start, end, where, prefix
    if low >= 0:
        written += emit()
    if duplicates:
        result.counts[DUPLICATE] += duplicates
    if distinct > written:
        result.counts[COLLAPSED] += distinct - written


@dataclass(frozen=True)
class CapOutcome:
    entries: list[str]
    refused: bool
    note: str  # what happened, for the report ("" when the list is within the caps)


def apply_caps(normalised: Normalised, max_entries: int, max_bytes: int, policy: str) -> CapOutcome:
    """Hold the list to ``max_entries`` and ``max_bytes``. ``refuse`` keeps the last good
    list; ``truncate`` keeps the blocks that came first in the feed."""
    if policy not in CAP_POLICIES:
        raise ValueError(f"cap policy must be one of {CAP_POLICIES}, got {policy!r}")
    entries = normalised.entries
    size = sum(len(entry) + 1 for entry in entries)
    if len(entries) <= max_entries and size <= max_bytes:
        return CapOutcome(entries, refused=False, note="")
    over = (
        f"{len(entries)} entries, {size} bytes: over the cap of {max_entries} entries "
        f"/ {max_bytes} bytes"
    )
    if policy == "refuse":
        return CapOutcome([], refused=True, note=f"{over}; update refused (cap policy refuse)")
    order = sorted(range(len(entries)), key=lambda i: (normalised.positions[i], i))
    kept: list[int] = []
    used = 0
    for index in order:
        cost = len(entries[index]) + 1
        if len(kept) == max_entries or used + cost > max_bytes:
            break
        kept.append(index)
        used += cost
    kept.sort()
    return CapOutcome(
        [entries[i] for i in kept],
        refused=False,
        note=f"{over}; kept the first {len(kept)} by feed order (cap policy truncate)",
    )
