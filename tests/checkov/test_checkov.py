"""Static security: checkov on dist/ finds nothing, and every skip has its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle import check

pytestmark = pytest.mark.checkov


def test_checkov_finds_no_failed_check(dist: Path) -> None:
    outcome, summary = check.run_checkov(dist)
    assert outcome.ok, outcome.detail
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert int(summary["passed"]) >= 25, "checkov scanned the modules"  # type: ignore[call-overload]


def test_every_skip_has_a_reason() -> None:
    skips = check.checkov_skips()
    assert skips, "the skip file is read"
    for check_id, reason in skips.items():
        assert check_id.startswith("CKV"), check_id
        assert len(reason.split()) >= 10, f"{check_id}: give a real reason"


def test_a_skip_without_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "skips.yaml"
    path.write_text("skips:\n  CKV_AWS_1: ''\n")
    with pytest.raises(ValueError, match="every skip needs a reason"):
        check.checkov_skips(path)


def test_checkov_copy_only_drops_required_version(dist: Path) -> None:
    copy = check.checkov_copy(dist)
    for original in dist.rglob("*.tf.json"):
        scanned = json.loads((copy / original.relative_to(dist)).read_text())
        data = json.loads(original.read_text())
        data["terraform"].pop("required_version")
        assert scanned == data
