"""The same inputs give a byte-identical dist/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.paths import ROOT
from tests.conftest import tree_digest

pytestmark = pytest.mark.synth


def test_second_synth_is_byte_identical(dist: Path, tmp_path: Path) -> None:
    first = tree_digest(dist)
    assert any(name.endswith("function.zip") for name in first)
    # A separate process into another folder: nothing can leak between the two runs.
    env = {**os.environ, "PLAYBOOK_DIST": str(tmp_path / "dist")}
    result = subprocess.run(
        [sys.executable, "main.py", "synth", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "end-of-life" not in result.stderr + result.stdout, "jsii must run on a supported Node"
    assert tree_digest(tmp_path / "dist") == first


def test_zip_is_deterministic_and_clean(tmp_path: Path) -> None:
    import zipfile

    from bundle import packaging

    a = packaging.build_zip("notifier", tmp_path / "a.zip")
    pycache = ROOT / "functions" / "notifier" / "__pycache__"
    pycache.mkdir(exist_ok=True)
    stray = pycache / "stray.cpython-311.pyc"
    stray.write_bytes(b"compiled")
    try:
        b = packaging.build_zip("notifier", tmp_path / "b.zip")
    finally:
        stray.unlink()
    assert a == b
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "functions/notifier/handler.py" in names
    assert "functions/common/aws.py" in names
    assert "functions/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith("functions/waf_blocker/") for n in names), "only its own code"
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
