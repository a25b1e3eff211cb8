"""What the blocker tests share: a clock the test moves, attacker addresses, malformed events."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from functions.common import addresses, blocking

START = 1_750_000_000.0
# 185.0.0.0/8 is ordinary RIPE-allocated unicast space (no special-purpose range): every
# address in it is global, and attacker_addresses checks that rather than trusting it.
SOURCE_RANGE = ipaddress.ip_network("185.0.0.0/8")


@dataclass
class FakeClock:
    """A clock the test moves; sleeping records the delay instead of waiting."""

    at: float = START
    slept: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def advance(self, seconds: float) -> None:
        self.at += seconds

    @property
    def clock(self) -> blocking.Clock:
        return blocking.Clock(now=self.now, sleep=self.sleep)


def attacker_addresses(count: int) -> list[str]:
    """``count`` distinct global addresses, spread over SOURCE_RANGE."""
    base = int(SOURCE_RANGE.network_address)
    # A prime stride spreads the addresses over the /8 instead of one dense block.
    hosts = [ipaddress.IPv4Address(base + 1 + index * 7_919) for index in range(count)]
    for host in hosts:
        assert host in SOURCE_RANGE and host.is_global
        assert addresses.classify(host, ()).allowed
    return [str(host) for host in hosts]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)
# What a blocker's handler may answer; anything else (an exception above all) is a bug.
HANDLED = {"rejected", "ignored", "processed", "swept"}


def malformed_event(data: st.DataObject, findings: Sequence[dict[str, Any]]) -> tuple[str, Any]:
    """An event sent by mistake or malice, and its shape: any JSON value, a direct request,
    an EventBridge envelope, or one of ``findings`` (real-shaped GuardDuty events) with one
    field of the event, its detail, resource or service deleted or replaced."""
    shape = data.draw(st.sampled_from(["any", "action", "detail", "finding"]))
    if shape == "any":
        return shape, data.draw(JSON_VALUES)
    if shape == "action":
        texts = st.lists(st.ip_addresses().map(str) | st.text(max_size=20), max_size=3)
        request = {
            "addresses": texts | JSON_VALUES,
            "ttl_seconds": st.integers() | JSON_VALUES,
            "reason": st.text(max_size=30) | JSON_VALUES,
        }
        action = st.sampled_from(["block", "unblock", "sweep"]) | JSON_VALUES
        return shape, data.draw(st.fixed_dictionaries({"action": action}, optional=request))
    if shape == "detail":
        detail_type = st.sampled_from(["GuardDuty Finding", "Scheduled Event"])
        optional = {"detail": JSON_VALUES, "account": JSON_VALUES}
        return shape, data.draw(
            st.fixed_dictionaries({"detail-type": detail_type}, optional=optional)
        )
    event = copy.deepcopy(data.draw(st.sampled_from(findings)))
    detail = event["detail"]
    target = data.draw(st.sampled_from([event, detail, detail["resource"], detail["service"]]))
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(JSON_VALUES)
    return shape, event
