"""The Config part of the demo on a moto server: one group fixed, the tagged one left,
both reported."""

from __future__ import annotations

import pytest

from bundle import demo_config

pytestmark = pytest.mark.unit


def test_demo_fixes_one_group_and_skips_the_tagged_one() -> None:
    demo = demo_config.run()
    assert demo.outcomes == {
        "web (no tag)": "remediated",
        "bastion (playbook:remediation=skip)": "skipped",
    }
    assert demo.groups["web (no tag)"] == ["tcp 22 from 198.51.100.0/24", "tcp 443 from 0.0.0.0/0"]
    assert "tcp 22 from 0.0.0.0/0" in demo.groups["bastion (playbook:remediation=skip)"]
    titles = sorted(r["detail"]["title"].rsplit(" ", 1)[-1] for r in demo.reports)
    assert titles == ["remediated", "skipped"]
