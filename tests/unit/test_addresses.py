"""Attacker-address extraction, the block/no-block decision, and the finding catalog."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.common import addresses, finding_catalog
from functions.common.addresses import FoundAddress, classify, extract_addresses
from functions.common.finding_catalog import FINDING_TYPES, ActionKind, event_pattern

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[1] / "events"


def detail(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event["detail"]


def ip(text: str) -> addresses.IPAddress:
    return ipaddress.ip_address(text)


# --------------------------------------------------------------------------- catalog


def test_catalog_is_sorted_unique_and_every_entry_has_a_kind() -> None:
    assert list(FINDING_TYPES) == sorted(set(FINDING_TYPES))
    assert set(FINDING_TYPES) == set(finding_catalog.CATALOG)
    assert {finding_catalog.action_kind(t) for t in FINDING_TYPES} == set(ActionKind)


@pytest.mark.parametrize(
    "finding_type",
    [
        "Recon:EC2/Portscan",  # our instance scans others
        "Impact:EC2/PortSweep",
        "Impact:EC2/WinRMBruteForce",  # outbound
        "UnauthorizedAccess:EC2/TorClient",  # our instance calls out to Tor
        "UnauthorizedAccess:EC2/TorRelay",
        "Backdoor:EC2/DenialOfService.Tcp",
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "PenTest:IAMUser/KaliLinux",
        "CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin",
    ],
)
def test_findings_where_the_remote_party_is_not_the_attacker_are_excluded(
    finding_type: str,
) -> None:
    assert finding_type not in FINDING_TYPES
    assert finding_catalog.action_kind(finding_type) is None


@pytest.mark.parametrize(
    ("finding_type", "kind"),
    [
        ("UnauthorizedAccess:EC2/SSHBruteForce", ActionKind.NETWORK_CONNECTION),
        ("UnauthorizedAccess:EC2/RDPBruteForce", ActionKind.NETWORK_CONNECTION),
        ("Recon:EC2/PortProbeUnprotectedPort", ActionKind.PORT_PROBE),
        ("Recon:EC2/PortProbeEMRUnprotectedPort", ActionKind.PORT_PROBE),
        ("UnauthorizedAccess:IAMUser/MaliciousIPCaller", ActionKind.AWS_API_CALL),
        ("UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", ActionKind.AWS_API_CALL),
        ("Recon:IAMUser/MaliciousIPCaller.Custom", ActionKind.AWS_API_CALL),
        ("UnauthorizedAccess:IAMUser/TorIPCaller", ActionKind.AWS_API_CALL),
        ("Discovery:S3/MaliciousIPCaller", ActionKind.AWS_API_CALL),
        ("Discovery:Kubernetes/TorIPCaller", ActionKind.KUBERNETES_API_CALL),
        ("CredentialAccess:RDS/MaliciousIPCaller.FailedLogin", ActionKind.RDS_LOGIN_ATTEMPT),
    ],
)
def test_catalog_maps_types_to_where_the_address_lives(finding_type: str, kind: ActionKind) -> None:
    assert finding_catalog.action_kind(finding_type) is kind


def test_event_pattern_matches_catalog_types_at_or_above_the_threshold() -> None:
    pattern = event_pattern(4.0)
    assert pattern == {
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {"type": list(FINDING_TYPES), "severity": [{"numeric": [">=", 4.0]}]},
    }
    assert len(json.dumps(pattern)) <= finding_catalog.EVENT_PATTERN_MAX_LENGTH


@pytest.mark.parametrize("severity", [-0.1, 10.5])
def test_event_pattern_rejects_impossible_severity(severity: float) -> None:
    with pytest.raises(ValueError, match="severity"):
        event_pattern(severity)


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("event_file", "expected"),
    [
        (
            "gd_waf_ssh_bruteforce_inbound.json",
            [
                FoundAddress(
                    ip("185.220.101.46"),
                    "service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
                )
            ],
        ),
        (
            "gd_waf_rdp_bruteforce_inbound.json",
            [
                FoundAddress(
                    ip("194.26.29.113"),
                    "service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
                )
            ],
        ),
        (
            "gd_waf_port_probe.json",
            [
                FoundAddress(
                    ip("80.82.77.139"),
                    "service.action.portProbeAction.portProbeDetails[0].remoteIpDetails.ipAddressV4",
                ),
                FoundAddress(
                    ip("45.155.205.233"),
                    "service.action.portProbeAction.portProbeDetails[1].remoteIpDetails.ipAddressV4",
                ),
                FoundAddress(
                    ip("91.240.118.172"),
                    "service.action.portProbeAction.portProbeDetails[3].remoteIpDetails.ipAddressV4",
                ),
            ],
        ),
        (
            "gd_waf_port_probe_emr.json",
            [
                FoundAddress(
                    ip("162.142.125.221"),
                    "service.action.portProbeAction.portProbeDetails[0].remoteIpDetails.ipAddressV4",
                )
            ],
        ),
        (
            "gd_waf_iam_malicious_ip_caller_ipv6.json",
            [
                FoundAddress(
                    ip("2a01:4f8:c17:2a45::1"),
                    "service.action.awsApiCallAction.remoteIpDetails.ipAddressV6",
                )
            ],
        ),
        (
            "gd_waf_s3_tor_ip_caller.json",
            [
                FoundAddress(
                    ip("185.220.100.252"),
                    "service.action.awsApiCallAction.remoteIpDetails.ipAddressV4",
                )
            ],
        ),
        (
            "gd_waf_kubernetes_tor_ip_caller.json",
            [
                FoundAddress(
                    ip("185.220.101.3"),
                    "service.action.kubernetesApiCallAction.remoteIpDetails.ipAddressV4",
                )
            ],
        ),
        (
            "gd_waf_rds_malicious_ip_failed_login.json",
            [
                FoundAddress(
                    ip("141.98.11.23"),
                    "service.action.rdsLoginAttemptAction.remoteIpDetails.ipAddressV4",
                )
            ],
        ),
    ],
)
def test_extracts_the_remote_addresses_of_each_action_kind(
    event_file: str, expected: list[FoundAddress]
) -> None:
    assert extract_addresses(detail(event_file)) == expected


def test_sample_events_cover_every_action_kind() -> None:
    kinds = {
        finding_catalog.action_kind(event["detail"]["type"])
        for event in (json.loads(path.read_text()) for path in EVENTS.glob("gd_waf_*.json"))
    }
    assert set(ActionKind) <= kinds


def test_outbound_connection_names_no_attacker() -> None:
    # Our instance brute-forcing someone else: the remote address is the victim.
    assert extract_addresses(detail("gd_waf_ssh_bruteforce_outbound.json")) == []


def test_unknown_direction_names_no_attacker() -> None:
    finding = detail("gd_waf_ssh_bruteforce_inbound.json")
    finding["service"]["action"]["networkConnectionAction"]["connectionDirection"] = "UNKNOWN"
    assert extract_addresses(finding) == []


def test_both_address_families_of_one_remote_are_extracted() -> None:
    finding = detail("gd_waf_s3_tor_ip_caller.json")
    remote = finding["service"]["action"]["awsApiCallAction"]["remoteIpDetails"]
    remote["ipAddressV6"] = "2A01:4F8:C17:2A45:0:0:0:1"
    assert [found.address for found in extract_addresses(finding)] == [
        ip("185.220.100.252"),
        ip("2a01:4f8:c17:2a45::1"),
    ]


def test_ipv4_mapped_ipv6_is_extracted_as_ipv4_and_deduplicated() -> None:
    finding = detail("gd_waf_port_probe.json")
    details = finding["service"]["action"]["portProbeAction"]["portProbeDetails"]
    details.append(copy.deepcopy(details[0]))
    details[-1]["remoteIpDetails"] = {"ipAddressV6": "::ffff:80.82.77.139"}
    found = extract_addresses(finding)
    assert [item.address for item in found] == [
        ip("80.82.77.139"),
        ip("45.155.205.233"),
        ip("91.240.118.172"),
    ]


def test_types_outside_the_catalog_yield_nothing() -> None:
    finding = detail("gd_waf_ssh_bruteforce_inbound.json")
    finding["type"] = "Recon:EC2/Portscan"
    assert extract_addresses(finding) == []


def test_garbage_values_are_skipped_not_raised() -> None:
    finding = detail("gd_waf_port_probe.json")
    details = finding["service"]["action"]["portProbeAction"]["portProbeDetails"]
    details[0]["remoteIpDetails"]["ipAddressV4"] = "not-an-ip"
    details[1]["remoteIpDetails"] = ["185.1.1.1"]
    details[2] = "oops"
    assert [item.address for item in extract_addresses(finding)] == [ip("91.240.118.172")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
address_like = st.one_of(st.ip_addresses().map(str), st.text(max_size=45), st.integers(), st.none())
remote_ip_details = st.fixed_dictionaries(
    {},
    optional={"ipAddressV4": address_like, "ipAddressV6": address_like, "city": json_values},
)
action_bodies = st.fixed_dictionaries(
    {},
    optional={
        "connectionDirection": st.sampled_from(["INBOUND", "OUTBOUND", "UNKNOWN"]) | json_values,
        "remoteIpDetails": remote_ip_details | json_values,
        "portProbeDetails": st.lists(
            st.fixed_dictionaries({}, optional={"remoteIpDetails": remote_ip_details})
            | json_values,
            max_size=5,
        )
        | json_values,
    },
)
finding_shaped = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(FINDING_TYPES) | json_values,
        "service": st.fixed_dictionaries(
            {},
            optional={
                "action": st.dictionaries(
                    st.sampled_from([kind.action_key for kind in ActionKind] + ["actionType"]),
                    action_bodies | json_values,
                )
                | json_values
            },
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(finding=finding_shaped | json_values)
def test_extract_never_raises_and_returns_unique_normalised_addresses(finding: Any) -> None:
    found = extract_addresses(finding)
    assert len({item.address for item in found}) == len(found)
    for item in found:
        assert addresses.normalise(item.address) == item.address
        assert item.where.startswith("service.action.")


# --------------------------------------------------------------------------- decisions


ALLOWLIST = addresses.parse_allowlist('["8.8.8.0/24", "2606:4700::/32", "100.24.0.5/32"]')


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private address (RFC 1918)"),
        ("172.31.255.1", "private address (RFC 1918)"),
        ("192.168.0.10", "private address (RFC 1918)"),
        ("fd12:3456:789a::1", "unique local address (RFC 4193)"),
        ("fec0::1", "site-local address"),
        ("127.0.0.1", "loopback address"),
        ("::1", "loopback address"),
        ("169.254.169.254", "link-local address"),
        ("fe80::1", "link-local address"),
        ("fe80::1%eth0", "link-local address"),
        ("224.0.0.251", "multicast address"),
        ("ff02::1", "multicast address"),
        ("0.0.0.0", "unspecified address"),
        ("::", "unspecified address"),
        ("100.64.12.1", "carrier-grade NAT"),
        ("192.0.2.10", "documentation range"),
        ("198.51.100.7", "documentation range"),
        ("203.0.113.9", "documentation range"),
        ("2001:db8::1", "documentation range"),
        ("3fff::1", "documentation range"),
        ("198.18.0.1", "benchmarking range"),
        ("2001:2::1", "benchmarking range"),
        ("192.0.0.9", "IETF protocol assignment"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("64:ff9b::808:808", "NAT64"),
        ("240.0.0.1", "reserved address"),
        ("255.255.255.255", "reserved address"),
        ("::ffff:10.0.0.1", "private address (RFC 1918)"),  # IPv4-mapped: judged as IPv4
        ("2002:a00:1::1", "6to4 address embedding 10.0.0.1: private address (RFC 1918)"),
        ("2002:c000:204::1", "6to4 address embedding 192.0.2.4: documentation range"),
        ("8.8.8.8", "allow-listed by 8.8.8.0/24"),
        ("100.24.0.5", "allow-listed by 100.24.0.5/32"),
        ("2606:4700:4700::1111", "allow-listed by 2606:4700::/32"),
        ("::ffff:8.8.8.9", "allow-listed by 8.8.8.0/24"),
        ("2002:808:808::1", "6to4 address embedding 8.8.8.8: allow-listed by 8.8.8.0/24"),
    ],
)
def test_never_blocks_allow_listed_or_non_global_addresses(address: str, reason: str) -> None:
    decision = classify(ipaddress.ip_address(address), ALLOWLIST)
    assert decision.allowed is False
    assert reason in decision.reason


@pytest.mark.parametrize(
    "address", ["185.220.101.46", "1.1.1.1", "2a01:4f8:c17:2a45::1", "2002:5db8:d822::1"]
)
def test_blocks_global_addresses(address: str) -> None:
    allowed, reason = classify(ipaddress.ip_address(address), ALLOWLIST)
    assert allowed is True
    assert reason == "global unicast address"


@settings(max_examples=300, deadline=None)
@given(address=st.ip_addresses())
def test_anything_allowed_is_global_and_outside_the_allowlist(
    address: addresses.IPAddress,
) -> None:
    decision = classify(address, ALLOWLIST)
    host = addresses.normalise(address)
    if decision.allowed:
        assert host.is_global
        assert not any(host in network for network in ALLOWLIST)


# --------------------------------------------------------------------------- text forms


def test_canonical_cidr_is_a_host_prefix() -> None:
    assert addresses.canonical_cidr(ip("185.220.101.46")) == "185.220.101.46/32"
    assert addresses.canonical_cidr(ip("2A01:4F8:C17:2A45:0::1")) == "2a01:4f8:c17:2a45::1/128"


def test_canonical_entry_normalises_hand_written_ip_set_entries() -> None:
    assert addresses.canonical_entry("2A01:04F8:0C17:2A45:0:0:0:1/128") == (
        "2a01:4f8:c17:2a45::1/128"
    )
    assert addresses.canonical_entry(" 1.2.3.4/32 ") == "1.2.3.4/32"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("185.220.101.46", "185.220.101.46"),
        ("185.220.101.46/32", "185.220.101.46"),
        (" 2a01:4f8:c17:2a45::1/128 ", "2a01:4f8:c17:2a45::1"),
        ("::ffff:185.220.101.46", "185.220.101.46"),
    ],
)
def test_parse_host_accepts_single_addresses(text: str, expected: str) -> None:
    assert addresses.parse_host(text) == ip(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("185.220.101.0/24", "only single addresses"),
        ("hello", "is not an IP address"),
        (42, "expected an IP address string"),
    ],
)
def test_parse_host_rejects_networks_and_garbage(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        addresses.parse_host(value)


@pytest.mark.parametrize(
    "text",
    [
        '["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]',
        "192.0.2.0/24, 2001:db8::/32 198.51.100.7",
        "192.0.2.0/24,2001:db8::/32,198.51.100.7,192.0.2.0/24",
    ],
)
def test_parse_allowlist_reads_json_or_separated_text(text: str) -> None:
    assert addresses.parse_allowlist(text) == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("198.51.100.7/32"),
    )


@pytest.mark.parametrize("text", ["", "  ", "[]"])
def test_parse_allowlist_empty(text: str) -> None:
    assert addresses.parse_allowlist(text) == ()


@pytest.mark.parametrize(
    ("text", "bad_entry"),
    [
        ('["192.0.2.0/24", "10.0.0.1/8"]', "'10.0.0.1/8'"),
        ("192.0.2.0/24, nonsense", "'nonsense'"),
        ('["192.0.2.0/24", 7]', "7"),
        ('["2001:db8::/129"]', "'2001:db8::/129'"),
    ],
)
def test_parse_allowlist_names_the_bad_entry(text: str, bad_entry: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"allowlist entry {bad_entry}")):
        addresses.parse_allowlist(text)


@pytest.mark.parametrize(("text", "message"), [('{"a": 1}', "must be a list"), ("[1,", "JSON")])
def test_parse_allowlist_rejects_bad_json(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        addresses.parse_allowlist(text)


# --------------------------------------------------------------------------- roles


Role = finding_catalog.Role
Answer = finding_catalog.Answer


def test_every_catalog_entry_has_an_answer_and_a_reason() -> None:
    assert len(finding_catalog.ENTRIES) > 150, "the whole published list, not a sample"
    for name, item in finding_catalog.ENTRIES.items():
        assert item.finding_type == name
        assert re.fullmatch(r"[A-Za-z0-9]+:[A-Za-z0-9]+/[A-Za-z0-9&.!]+", name), name
        assert isinstance(item.answer, Answer)
        assert len(item.reason) > 20, name
        assert (item.kind is None) == (item.answer is Answer.NOT_OURS), name
    answers = {item.answer for item in finding_catalog.ENTRIES.values()}
    assert answers == set(Answer)


@pytest.mark.parametrize(
    ("finding_type", "direction", "role"),
    [
        ("UnauthorizedAccess:EC2/TorIPCaller", "INBOUND", Role.INBOUND_ATTACKER),
        ("UnauthorizedAccess:EC2/MaliciousIPCaller.Custom", "INBOUND", Role.INBOUND_ATTACKER),
        ("UnauthorizedAccess:EC2/MaliciousIPCaller.Custom", "OUTBOUND", Role.OUTBOUND_DESTINATION),
        (
            "UnauthorizedAccess:Lambda/MaliciousIPCaller.Custom",
            "OUTBOUND",
            Role.OUTBOUND_DESTINATION,
        ),
        ("Backdoor:EC2/C&CActivity.B", "OUTBOUND", Role.OUTBOUND_DESTINATION),
        ("Backdoor:EC2/C&CActivity.B", "INBOUND", None),
        ("Trojan:EC2/DropPoint", "OUTBOUND", Role.OUTBOUND_DESTINATION),
        ("UnauthorizedAccess:EC2/SSHBruteForce", "INBOUND", Role.INBOUND_ATTACKER),
        ("UnauthorizedAccess:EC2/SSHBruteForce", "OUTBOUND", None),
        ("Recon:EC2/PortProbeUnprotectedPort", None, Role.INBOUND_ATTACKER),
        ("Recon:IAMUser/MaliciousIPCaller.Custom", None, Role.INBOUND_ATTACKER),
        ("Recon:EC2/Portscan", "OUTBOUND", None),
        ("Backdoor:EC2/C&CActivity.B!DNS", "OUTBOUND", None),
    ],
)
def test_the_catalog_answers_by_direction(
    finding_type: str, direction: str | None, role: Role | None
) -> None:
    item = finding_catalog.entry(finding_type)
    assert item is not None
    assert item.role(direction) is role


def test_every_custom_threat_list_finding_is_answered() -> None:
    custom = [name for name in finding_catalog.ENTRIES if name.endswith(".Custom")]
    assert "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom" in custom
    for name in custom:
        item = finding_catalog.ENTRIES[name]
        if item.answer is Answer.NOT_OURS:
            assert "domain" in item.reason, name  # Impact:EC2/MaliciousDomainRequest.Custom
        else:
            assert Role.INBOUND_ATTACKER in item.roles, name


def test_the_edge_pattern_carries_only_inbound_types_and_the_nacl_pattern_all() -> None:
    edge = event_pattern(1.0, [Role.INBOUND_ATTACKER])["detail"]["type"]
    subnet = event_pattern(1.0)["detail"]["type"]
    assert "UnauthorizedAccess:EC2/TorIPCaller" in edge
    assert "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom" in edge
    assert "Backdoor:EC2/C&CActivity.B" not in edge
    assert "Backdoor:EC2/C&CActivity.B" in subnet
    assert set(edge) < set(subnet) == set(FINDING_TYPES)
    assert "Recon:EC2/Portscan" not in subnet
    assert len(json.dumps(event_pattern(1.0))) <= finding_catalog.EVENT_PATTERN_MAX_LENGTH


def test_the_docs_table_is_generated_from_the_catalog() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "finding-catalog.md"
    assert docs.read_text() == finding_catalog.markdown(), "run: python main.py docs"
    for name in finding_catalog.ENTRIES:
        assert f"`{name}`" in docs.read_text()


def test_an_outbound_cc_connection_names_its_destination() -> None:
    found = extract_addresses(detail("gd_ec2_cc_activity_outbound.json"))
    assert found == [
        FoundAddress(
            ip("45.137.21.9"),
            "service.action.networkConnectionAction.remoteIpDetails.ipAddressV4",
            Role.OUTBOUND_DESTINATION,
        )
    ]


def test_a_tor_exit_connecting_in_is_an_inbound_attacker() -> None:
    found = extract_addresses(detail("gd_ec2_tor_ip_caller.json"))
    assert [(item.address, item.role) for item in found] == [
        (ip("185.220.101.33"), Role.INBOUND_ATTACKER)
    ]


@pytest.mark.parametrize("value", [" 185.220.101.46", "185.220.101.46 ", "185.220.101.46\n"])
def test_an_address_with_surrounding_whitespace_is_rejected_with_a_reason(value: str) -> None:
    finding = detail("gd_waf_ssh_bruteforce_inbound.json")
    finding["service"]["action"]["networkConnectionAction"]["remoteIpDetails"]["ipAddressV4"] = (
        value
    )
    extraction = addresses.extract(finding)
    assert extraction.found == []
    ((shown, reason),) = extraction.rejected
    assert shown == value
    assert "surrounding whitespace" in reason
    assert reason.startswith("service.action.networkConnectionAction.remoteIpDetails.ipAddressV4")
