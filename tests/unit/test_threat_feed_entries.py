"""threat_feed parsers and normalisation: real-format fixtures, the blockers' address rules,
deduplication, collapsing, the caps, and hypothesis-generated garbage."""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.common import addresses
from functions.threat_feed import entries, parsers
from functions.threat_feed.entries import apply_caps, normalise_entries

pytestmark = pytest.mark.unit

FEEDS = Path(__file__).resolve().parents[1] / "events" / "threat_feeds"
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def feed(name: str) -> str:
    return (FEEDS / name).read_text()


# ------------------------------------------------------------------------ parsers


def test_plain_takes_first_token_and_skips_comments_and_blanks() -> None:
    parsed = parsers.parse_plain(feed("plain.txt"))
    assert parsed.candidates == [
        "185.220.101.7",
        "185.220.101.8",
        "185.220.101.8",
        "45.155.205.0/24",
        "2a0e:1c80:1::7",
        "192.168.1.10",
        "not-an-address",
        "8.8.8.8/8",
    ]


def test_drop_and_edrop_read_cidr_before_the_sbl_id() -> None:
    drop = parsers.parse_drop(feed("drop.txt"))
    assert drop.candidates[:2] == ["1.10.16.0/20", "1.19.0.0/16"]
    assert len(drop.candidates) == 6 and not drop.rejected
    edrop = parsers.parse_drop(feed("edrop.txt"))
    assert edrop.candidates == ["27.126.160.0/20", "36.0.8.0/21", "36.37.48.0/20"]


def test_drop_line_with_two_tokens_before_the_comment_is_malformed() -> None:
    parsed = parsers.parse_drop("1.2.3.0/24 extra ; SBL1\n")
    assert parsed.candidates == [] and parsed.rejected == {parsers.MALFORMED_LINE: 1}


def test_csv_reads_the_named_column_and_counts_blank_cells() -> None:
    parsed = parsers.parse_csv(feed("feed.csv"), "ip")
    assert parsed.candidates == ["185.220.101.7", "45.155.205.233", "2a0e:1c80:1::7", "127.0.0.1"]
    assert parsed.rejected == {parsers.MISSING_VALUE: 1}


def test_csv_without_the_column_is_a_format_error_naming_the_columns() -> None:
    with pytest.raises(parsers.FeedFormatError, match=r"no column 'address'.*'ip'"):
        parsers.parse_csv(feed("feed.csv"), "address")


def test_stix_honours_valid_until_revoked_and_pattern_type() -> None:
    parsed = parsers.parse_stix(feed("bundle.json"), NOW)
    assert parsed.candidates == ["91.92.240.5", "194.26.29.0/24", "2a0e:1c80:2::66"]
    assert parsed.rejected == {
        parsers.STIX_EXPIRED: 1,
        parsers.STIX_REVOKED: 1,
        parsers.STIX_NOT_ADDRESS: 1,
        parsers.STIX_UNSUPPORTED: 1,
    }


def test_stix_indicator_expires_once_valid_until_passes() -> None:
    later = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    parsed = parsers.parse_stix(feed("bundle.json"), later)
    assert "91.92.240.5" not in parsed.candidates
    assert parsed.rejected[parsers.STIX_EXPIRED] == 2


def test_stix_indicator_not_yet_valid_is_left_out() -> None:
    early = datetime(2025, 10, 15, tzinfo=UTC)
    parsed = parsers.parse_stix(feed("bundle.json"), early)
    assert "91.92.240.5" not in parsed.candidates
    assert parsed.rejected[parsers.STIX_NOT_YET_VALID] == 2  # the server and the domain


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"type": "indicator"}', '{"type": "bundle", "objects": 3}']
)
def test_stix_garbage_is_a_format_error(text: str) -> None:
    with pytest.raises(parsers.FeedFormatError):
        parsers.parse_stix(text, NOW)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feed format 'xml'"):
        parsers.parser_for("xml")


# ------------------------------------------------------------------------ normalisation


def test_plain_feed_is_judged_deduplicated_and_collapsed() -> None:
    parsed = parsers.parse_plain(feed("plain.txt"))
    result = normalise_entries(parsed.candidates)
    assert result.entries == ["45.155.205.0/24", "185.220.101.7", "185.220.101.8", "2a0e:1c80:1::7"]
    assert result.counts == Counter(
        {
            entries.DUPLICATE: 1,
            "private address (RFC 1918)": 1,
            entries.MALFORMED: 1,
            entries.HOST_BITS: 1,
        }
    )


def test_adjacent_and_overlapping_ranges_collapse_to_fewest_blocks() -> None:
    result = normalise_entries(
        [
            "185.1.0.0/25",
            "185.1.0.128/25",
            "185.1.1.0/24",
            "185.1.0.7",
            "2a00::/33",
            "2a00:0:8000::/33",
        ]
    )
    assert result.entries == ["185.1.0.0/23", "2a00::/32"]
    assert result.counts == {entries.COLLAPSED: 4}


def test_drop_feed_refuses_the_private_block_and_keeps_the_rest() -> None:
    result = normalise_entries(parsers.parse_drop(feed("drop.txt")).candidates)
    assert "10.0.0.0/8" not in result.entries
    assert result.counts == {"range containing private address (RFC 1918)": 1}
    assert len(result.entries) == 5


def test_allowlisted_hosts_and_overlapping_ranges_are_refused_with_reason() -> None:
    allow = addresses.parse_allowlist('["185.220.101.0/28"]')
    result = normalise_entries(["185.220.101.7", "185.220.0.0/16", "185.221.0.1"], allow)
    assert result.entries == ["185.221.0.1"]
    assert result.counts == {
        "allow-listed by 185.220.101.0/28": 1,
        "range overlapping allow-listed 185.220.101.0/28": 1,
    }


def test_ranges_reaching_into_special_purpose_blocks_are_refused() -> None:
    result = normalise_entries(["64.0.0.0/2", "2000::/3", "2002:a00::/24", "169.254.0.0/16"])
    assert result.entries == []
    assert result.counts["range containing link-local address"] == 1
    assert sum(result.counts.values()) == 4
    assert all(reason.startswith("range containing") for reason in result.counts)


def test_ipv4_mapped_host_is_listed_as_ipv4_and_6to4_of_private_is_refused() -> None:
    result = normalise_entries(["::ffff:185.220.101.9", "2002:a00:1::1"])
    assert result.entries == ["185.220.101.9"]
    assert result.counts == {"6to4 address embedding 10.0.0.1: private address (RFC 1918)": 1}


# ------------------------------------------------------------------------ caps


def test_cap_refuse_keeps_nothing_and_says_so() -> None:
    result = normalise_entries(["185.1.0.1", "185.1.0.3", "185.1.0.5"])
    outcome = apply_caps(result, 2, entries.THREAT_LIST_MAX_BYTES, "refuse")
    assert outcome.refused and outcome.entries == []
    assert "3 entries" in outcome.note and "refuse" in outcome.note


def test_cap_truncate_keeps_the_first_entries_of_the_feed() -> None:
    result = normalise_entries(["185.1.0.5", "2a00::1", "185.1.0.1", "185.1.0.3"])
    outcome = apply_caps(result, 2, entries.THREAT_LIST_MAX_BYTES, "truncate")
    assert not outcome.refused
    assert outcome.entries == ["185.1.0.5", "2a00::1"]
    assert "kept the first 2 by feed order" in outcome.note


def test_cap_counts_bytes_too() -> None:
    result = normalise_entries(["185.1.0.1", "185.1.0.3"])
    outcome = apply_caps(result, 10, len("185.1.0.1\n"), "truncate")
    assert outcome.entries == ["185.1.0.1"]


def test_within_caps_is_untouched() -> None:
    result = normalise_entries(["185.1.0.1"])
    assert apply_caps(result, 1, 100, "refuse") == entries.CapOutcome(["185.1.0.1"], False, "")


# ------------------------------------------------------------------------ properties

_BOUNDARIES = sorted(
    {
        value
        for network in addresses.EXCLUDED_RANGES
        for edge in (int(network.network_address), int(network.broadcast_address))
        for value in (edge - 1, edge, edge + 1)
        if 0 <= value < 2**network.max_prefixlen
    }
)


@st.composite
def ipv4_or_ipv6(draw: st.DrawFn) -> addresses.IPAddress:
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    near = [v for v in _BOUNDARIES if v < 2**bits]
    value = draw(st.one_of(st.integers(0, 2**bits - 1), st.sampled_from(near)))
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@settings(max_examples=400, deadline=None)
@given(ipv4_or_ipv6())
def test_every_host_classify_refuses_lies_in_the_excluded_ranges(
    address: addresses.IPAddress,
) -> None:
    """The fast path skips classify() outside EXCLUDED_RANGES: that is only sound if
    classify never refuses an address there."""
    if not addresses.classify(address, ()).allowed:
        assert any(
            address in network
            for network in addresses.EXCLUDED_RANGES
            if network.version == address.version
        )


@settings(max_examples=400, deadline=None)
@given(ipv4_or_ipv6(), st.booleans())
def test_a_host_is_listed_exactly_when_the_blockers_would_block_it(
    address: addresses.IPAddress, as_cidr: bool
) -> None:
    text = f"{address}/{address.max_prefixlen}" if as_cidr else str(address)
    result = normalise_entries([text])
    decision = addresses.classify(address, ())
    if decision.allowed:
        assert result.entries == [str(addresses.normalise(address))]
    else:
        assert result.entries == [] and result.counts == {decision.reason: 1}


@settings(max_examples=300, deadline=None)
@given(ipv4_or_ipv6(), st.integers(0, 128))
def test_a_range_is_listed_only_when_every_address_in_it_may_be_blocked(
    address: addresses.IPAddress, prefix: int
) -> None:
    prefix = min(prefix, address.max_prefixlen)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    result = normalise_entries([str(network)])
    if result.entries:
        listed = ipaddress.ip_network(result.entries[0])
        assert listed == network or network.num_addresses == 1
        for excluded in addresses.EXCLUDED_RANGES:
            if network.num_addresses > 1:
                assert not (excluded.version == network.version and network.overlaps(excluded))
        assert addresses.classify(network.network_address, ()).allowed
        assert addresses.classify(network.broadcast_address, ()).allowed


_LINE = st.text(
    alphabet=st.sampled_from([*"0123456789abcdefABCDEF:./%; #,\t'xX-", "\u0660", "\u00b2"]),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINE, max_size=30), st.sampled_from(["plain", "drop"]))
def test_garbage_lines_never_crash_and_never_let_a_bad_entry_through(
    lines: list[str], feed_format: str
) -> None:
    parsed = parsers.parser_for(feed_format)("\n".join(lines), NOW)
    result = normalise_entries(parsed.candidates)
    for entry in result.entries:
        network = ipaddress.ip_network(entry)  # every written entry parses strictly
        assert str(network.network_address) == entry.partition("/")[0]
        assert addresses.classify_network(network, ()).allowed
    total = (
        sum(result.counts.values())
        - result.counts[entries.DUPLICATE]
        - result.counts[entries.COLLAPSED]
    )
    assert result.accepted + total == len(parsed.candidates)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**16 - 1), max_size=40), st.lists(st.integers(16, 32), max_size=40))
def test_collapsed_list_covers_exactly_the_union_of_the_accepted_ranges(
    starts: list[int], prefixes: list[int]
) -> None:
    base = int(ipaddress.IPv4Address("185.0.0.0"))
    networks = [
        ipaddress.IPv4Network((base + (s << 8) & ~((1 << (32 - p)) - 1) & 0xFFFFFFFF, p))
        for s, p in zip(starts, prefixes, strict=False)
    ]
    result = normalise_entries([str(n) for n in networks])
    expected = list(ipaddress.collapse_addresses(networks))
    assert [ipaddress.ip_network(e) for e in result.entries] == expected


def test_ipv6_text_is_the_same_as_ipaddress_writes_it() -> None:
    for text in [
        "2a00:0:0:1::1",
        "2a00:1:0:0:1::",
        "2a0e:1c80:1:0:0:0:0:7",
        "2600::",
        "2a00:0:1:0:0:1:0:0",
    ]:
        assert normalise_entries([text]).entries == [str(ipaddress.ip_address(text))]


def test_a_nul_or_lone_surrogate_in_a_line_is_malformed_not_a_crash() -> None:
    # inet_pton raises ValueError (not OSError) for these; a feed line may carry either.
    result = normalise_entries(["185.1.0.1\x00", "2a00::1\x00", "185.1.0.\ud800", "185.1.0.2"])
    assert result.entries == ["185.1.0.2"]
    assert result.counts == {entries.MALFORMED: 3}


# ------------------------------------------------------------------------ fast path vs reference


def _reference(
    texts: list[str], allowlist: tuple[addresses.IPNetwork, ...]
) -> tuple[list[addresses.IPNetwork], Counter[str], int, list[int]]:
    """What the blockers' rules say, entry by entry, with ipaddress only: the collapsed
    networks, the counts per reason, how many entries were accepted, and the feed index
    of the earliest entry each collapsed network was merged from."""
    counts: Counter[str] = Counter()
    accepted: list[tuple[int, addresses.IPNetwork]] = []
    for index, raw in enumerate(texts):
        try:
            interface = ipaddress.ip_interface(raw.strip())
        except ValueError:
            counts[entries.MALFORMED] += 1
            continue
        network = interface.network
        if int(interface.ip) != int(network.network_address):
            counts[entries.HOST_BITS] += 1
            continue
        decision = addresses.classify_network(network, allowlist)
        if not decision.allowed:
            counts[decision.reason] += 1
            continue
        if network.num_addresses == 1:
            network = ipaddress.ip_network(addresses.normalise(network.network_address))
        accepted.append((index, network))
    distinct = {network for _, network in accepted}
    collapsed: list[addresses.IPNetwork] = [
        *ipaddress.collapse_addresses(n for n in distinct if isinstance(n, ipaddress.IPv4Network)),
        *ipaddress.collapse_addresses(n for n in distinct if isinstance(n, ipaddress.IPv6Network)),
    ]
    if len(accepted) > len(distinct):
        counts[entries.DUPLICATE] += len(accepted) - len(distinct)
    if len(distinct) > len(collapsed):
        counts[entries.COLLAPSED] += len(distinct) - len(collapsed)
    # Every block written for one merged interval (adjacent blocks of collapse_addresses)
    # keeps the interval's earliest entry.
    intervals: list[list[addresses.IPNetwork]] = []
    for block in collapsed:
        previous = intervals[-1][-1] if intervals else None
        if (
            previous is not None
            and previous.version == block.version
            and int(previous.broadcast_address) + 1 == int(block.network_address)
        ):
            intervals[-1].append(block)
        else:
            intervals.append([block])
    earliest: list[int] = []
    for group in intervals:
        low, high = int(group[0].network_address), int(group[-1].broadcast_address)
        first = min(
            index
            for index, n in accepted
            if n.version == group[0].version and low <= int(n.network_address) <= high
        )
        earliest += [first] * len(group)
    return collapsed, counts, len(accepted), earliest


_NEAR_EDGES = st.sampled_from(_BOUNDARIES)


@st.composite
def feed_text(draw: st.DrawFn) -> str:
    """One feed entry as feeds write them: hosts and ranges of both families, clustered so
    that they repeat, overlap and touch, near the excluded ranges' edges, in other
    spellings (``/32``, upper case, ``::ffff:``, padded), and garbage."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    base = int(ipaddress.ip_address("185.220.0.0" if version == 4 else "2a0e:1c80::"))
    value = draw(
        st.one_of(
            st.integers(base, base + 15),
            st.sampled_from([v for v in _BOUNDARIES if v < 2**bits]),
        )
    )
    prefix = draw(st.one_of(st.just(bits), st.integers(bits - 5, bits)))
    address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    spelling = draw(st.sampled_from(["canonical", "cidr", "host bits", "upper", "mapped", "pad"]))
    if spelling == "cidr":
        return str(network)
    if spelling == "host bits":
        return f"{address}/{prefix}"
    if spelling == "upper":
        return str(network if prefix < bits else address).upper()
    if spelling == "mapped" and version == 4:
        return f"::ffff:{address}"
    if spelling == "pad":
        return f" {network if prefix < bits else address}\t"
    return str(network if prefix < bits else address)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(feed_text(), feed_text(), _LINE), max_size=40),
    st.lists(st.sampled_from(["185.220.0.16/28", "185.220.0.40/32", "2a0e:1c80::/122"])),
    st.integers(1, 8),
)
def test_normalisation_agrees_with_the_blockers_rules_and_collapse_addresses(
    texts: list[str], allow: list[str], cap: int
) -> None:
    """The fast path (distinct texts, integer keys, per-range exclusion check, one-pass
    collapse) gives what judging each entry with ipaddress and classify_network, then
    ipaddress.collapse_addresses, gives: the list, every count, and the truncate order."""
    allowlist = tuple(ipaddress.ip_network(cidr) for cidr in dict.fromkeys(allow))
    collapsed, counts, accepted, earliest = _reference(texts, allowlist)
    result = normalise_entries(texts, allowlist)
    assert [ipaddress.ip_network(entry) for entry in result.entries] == collapsed
    assert result.entries == [
        str(n.network_address) if n.num_addresses == 1 else str(n) for n in collapsed
    ]
    assert result.counts == counts
    assert result.accepted == accepted
    by_feed_order = sorted(range(len(collapsed)), key=lambda i: (earliest[i], i))
    assert sorted(range(len(result.entries)), key=lambda i: (result.positions[i], i)) == (
        by_feed_order
    )
    outcome = apply_caps(result, cap, entries.THREAT_LIST_MAX_BYTES, "truncate")
    assert outcome.entries == [result.entries[i] for i in sorted(by_feed_order[:cap])]
