"""Validate, normalise, deduplicate and collapse a feed's candidate entries, then apply the
caps GuardDuty sets on a list.

Every entry is judged by the blockers' rules (``functions.common.addresses``): a host by
:func:`~functions.common.addresses.classify`, a range by
:func:`~functions.common.addresses.classify_network`, with the same allowlist. Each
refusal is counted under its reason.

A feed is large (GuardDuty takes 250,000 entries a list), so the work is arranged for
Python's speed: each distinct text is judged once and counted as often as it repeats; a
host that ``inet_pton`` reads becomes one integer key, and the hosts of a family are
sorted once and checked against
:data:`~functions.common.addresses.EXCLUDED_RANGES` (and the allowlist) with two binary
searches per excluded range rather than one per host. Everything else (ranges, hosts
inside an excluded range, text ``inet_pton`` refuses) goes through :meth:`_Judge.judge`,
whose own fast path is ``inet_pton`` and a binary search, and which hands whatever it
does not accept outright to ``ipaddress`` and the classify functions, so the outcome is
theirs (property-tested to agree).

Collapsing works on the sorted integer keys per address family in one pass: duplicates
are dropped, overlapping and adjacent ranges merge, and each merged interval is written
as the fewest CIDR blocks. A block keeps the feed order of its earliest entry, which is
what the ``truncate`` cap policy keeps first.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

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

_PACK_IPV4 = struct.Struct(">I").pack
_PACK_IPV6 = partial(int.to_bytes, length=16, byteorder="big")
_NTOP_IPV6 = partial(socket.inet_ntop, socket.AF_INET6)


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
    """The list to write, in address order, with each block's place in feed order: the rank
    of its earliest entry's text among the feed's distinct texts, in order of first
    appearance (what the ``truncate`` cap policy keeps first)."""

    entries: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    accepted: int = 0  # valid entries before deduplication and collapsing

    def text(self) -> str:
        return "\n".join(self.entries) + "\n" if self.entries else ""


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
        except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
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


# A block is sorted and merged as one integer key, ``(start << 8 | prefix) << shift | text``,
# where ``text`` is the index of its entry's text among the feed's distinct texts (first
# appearance first) and ``shift`` the bits that index needs: ints sort far faster than
# tuples, a block sorts before the smaller blocks starting where it does, and of equal
# blocks the one the feed names first comes first.


def _host_keys(texts: Sequence[str], shift: int) -> tuple[list[int], list[int], list[int]]:
    """Keys of the texts that ``inet_pton`` reads as a host (IPv4, IPv6), not yet checked
    against the excluded ranges, and the indexes of every other text."""
    pton, inet, inet6 = socket.inet_pton, socket.AF_INET, socket.AF_INET6
    move, host4, host6 = shift + 8, 32 << shift, 128 << shift
    keys4: list[int] = []
    keys6: list[int] = []
    others: list[int] = []
    add4, add6, add_other, number = keys4.append, keys6.append, others.append, int.from_bytes
    for index, text in enumerate(texts):
        if "/" in text:
            add_other(index)
            continue
        try:
            if ":" in text:
                add6(number(pton(inet6, text), "big") << move | host6 | index)
            else:
                add4(number(pton(inet, text), "big") << move | host4 | index)
        except (OSError, ValueError):
            add_other(index)
    return keys4, keys6, others


def _outside(
    keys: list[int], excluded: tuple[list[int], list[int]], shift: int
) -> tuple[list[int], list[int]]:
    """Sorted host ``keys`` split into those outside every excluded interval and the text
    indexes of those inside one (left for the full judgement)."""
    keys.sort()
    move, mask = shift + 8, (1 << shift) - 1
    kept: list[int] = []
    inside: list[int] = []
    cursor = 0
    for low, high in zip(*excluded, strict=True):
        first = bisect.bisect_left(keys, low << move, cursor)
        after = bisect.bisect_left(keys, (high + 1) << move, first)
        kept += keys[cursor:first]
        inside += [key & mask for key in keys[first:after]]
        cursor = after
    kept += keys[cursor:]
    return kept, inside


def normalise_entries(
    candidates: Iterable[str],
    allowlist: Sequence[IPNetwork] = (),
    counts: Counter[str] | None = None,
) -> Normalised:
    """Judge, deduplicate and collapse ``candidates`` (in feed order).

    Each distinct text is judged once and its verdict counted as often as the feed repeats
    it. Hosts that ``inet_pton`` reads and that lie outside every excluded range (checked
    with a binary search per range over the sorted hosts, not per host) are accepted as
    they are; every other text gets :meth:`_Judge.judge`.
    """
    result = Normalised(counts=Counter(counts or {}))
    occurrences = Counter(map(str.strip, candidates))
    texts = list(occurrences)
    judge = _Judge(allowlist)
    shift = max(len(texts).bit_length(), 1)
    keys4, keys6, others = _host_keys(texts, shift)
    keys4, inside4 = _outside(keys4, judge.excluded[4], shift)
    keys6, inside6 = _outside(keys6, judge.excluded[6], shift)
    keys = {4: keys4, 6: keys6}
    tally = result.counts
    refused = 0
    for index in sorted(others + inside4 + inside6):
        verdict = judge.judge(texts[index])
        if isinstance(verdict, str):
            repeats = occurrences[texts[index]]
            tally[verdict] += repeats
            refused += repeats
        else:
            version, start, prefix = verdict
            keys[version].append((start << 8 | prefix) << shift | index)
    result.accepted = occurrences.total() - refused
    blocks = _collapse(keys4, 32, shift, result) + _collapse(keys6, 128, shift, result)
    if result.accepted > blocks:
        tally[DUPLICATE] += result.accepted - blocks
    if blocks > len(result.entries):
        tally[COLLAPSED] += blocks - len(result.entries)
    return result


def _collapse(keys: list[int], bits: int, shift: int, result: Normalised) -> int:
    """Merge one family's block keys (consumed) into intervals, write each as the fewest
    blocks, and return how many distinct blocks there were."""
    keys.sort()
    mask = (1 << shift) - 1
    last = [(1 << (bits - prefix)) - 1 for prefix in range(bits + 1)]  # a block's last offset
    # Past every address and not adjacent to any: it writes out the last real interval.
    keys.append((1 << bits) + 1 << 8 + shift)
    blocks: list[int] = []  # ``start << 8 | prefix`` of each block written
    add_block, add_position = blocks.append, result.positions.append
    repeated = 0
    # The interval being merged: its bounds, earliest text, and its one block while it is
    # still one block as listed (-1 once two blocks have merged into it, -2 before any).
    high = first = single = -2
    low = previous = -1
    for key in keys:
        block = key >> shift
        if block == previous:
            repeated += 1
            continue
        previous = block
        start = block >> 8
        if start <= high + 1:
            end = start + last[block & 0xFF]
            if end > high:
                high = end
            if key & mask < first:
                first = key & mask
            single = -1
            continue
        if single >= 0:
            add_block(single)
            add_position(first)
        elif single == -1:
            for block_start, prefix in _blocks(low, high, bits):
                add_block(block_start << 8 | prefix)
                add_position(first)
        low = start
        high = start + last[block & 0xFF]
        first = key & mask
        single = block
    result.entries += _texts(blocks, bits)
    return len(keys) - 1 - repeated  # the sentinel is not a block


def _texts(blocks: list[int], bits: int) -> list[str]:
    """The list text of each block: the address as ``inet_ntop`` writes it (as ``ipaddress``
    does), with ``/prefix`` unless the block is one host."""
    starts = [block >> 8 for block in blocks]
    if bits == 32:
        addresses = map(socket.inet_ntoa, map(_PACK_IPV4, starts))
    else:
        addresses = map(_NTOP_IPV6, map(_PACK_IPV6, starts))
    return [
        address if block & 0xFF == bits else f"{address}/{block & 0xFF}"
        for address, block in zip(addresses, blocks, strict=True)
    ]


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
