"""`python main.py plan` / `apply` end to end against one moto server holding five
accounts: the real Terraform CLI and AWS provider, the stacks' real S3 backend (state and
lock file in moto's S3) and each stack's own ``assume_role`` into its account through
moto's STS.

The stacks are the smallest that prove it: the notifications module without its notifier
and finding rules (a KMS key and SNS topics per account), one account in two regions, and
a wave whose stack fails at plan (a network ACL that does not exist) followed by one that
must then never run.

What differs from a real rollout, and why: the provider and the backend are pointed at
moto with fake base credentials by the CLI's own ``--override`` (a Terraform override file
beside each stack) and ``--backend-config`` (passed to ``terraform init``) options.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from bundle import environments, orchestration, releases
from bundle import terraform as tf
from bundle.motoserver import moto_server, pointed_at, s3_backend_config, terraform_override
from bundle.paths import ROOT

pytestmark = pytest.mark.e2e

BUCKET = "rollout-state"
RELEASES = "module-releases"
RELEASE = "1.2.0"
PREFIX = "tests"
SERVICES = ("ec2", "events", "iam", "kms", "s3", "sns", "sqs", "sts", "cloudwatch", "logs")
ACCOUNTS = {
    "canary": ("111111111111", 1),
    "team-b": ("333333333333", 2),
    "broken": ("444444444444", 3),
    "after": ("555555555555", 4),
}


def _environment(endpoint: str) -> dict[str, Any]:
    accounts = []
    for name, (account, wave) in ACCOUNTS.items():
        entry: dict[str, Any] = {
            "name": name,
            "id": account,
            "role_arn": f"arn:aws:iam::{account}:role/PlaybookDeployer",
            "wave": wave,
        }
        if name == "team-b":
            entry["regions"] = ["us-east-1", "eu-west-1"]
        if name == "broken":
            entry["modules"] = {"nacl_blocklist": {"network_acl_ids": ["acl-0123456789abcdef0"]}}
        if name == "after":
            entry["module_versions"] = {"notifications": RELEASE}
        accounts.append(entry)
    return {
        "name": "rollout",
        # Released modules are archives in moto's S3, fetched over HTTP as Terraform fetches
        # https://BUCKET.s3.amazonaws.com/... (Terraform's s3:: getter ignores a custom
        # endpoint and always asks s3.amazonaws.com, so it cannot be pointed at moto).
        "releases": {"source": f"{endpoint}/{RELEASES}/{{module}}-{{version}}.zip"},
        "backend": {"bucket": BUCKET, "region": "us-east-1", "key_prefix": PREFIX},
        "waves": [
            {"number": 1, "name": "canary", "max_parallel": 1},
            {"number": 2, "max_parallel": 2},
            {"number": 3},
            {"number": 4},
        ],
        "defaults": {
            "regions": ["us-east-1"],
            "modules": {
                "notifications": {
                    "create_notifier": False,
                    "create_finding_rules": False,
                    "kms_deletion_window_days": 7,
                }
            },
        },
        "accounts": accounts,
    }


def _main(dist: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python main.py ARGS`` as a user runs it, building into ``dist``."""
    environment = {**os.environ, "PLAYBOOK_DIST": str(dist), "COLUMNS": "200"}
    command = [sys.executable, "main.py", *args]
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900
    )


@dataclass
class World:
    endpoint: str
    env_file: Path
    dist: Path
    workdir: Path
    options: list[str]
    override: dict[str, Any]
    backend_config: list[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _main(self.dist, *args, "--file", str(self.env_file), *self.options)

    def client(self, service: str, account: str, region: str = "us-east-1") -> Any:
        sts = boto3.client("sts", region_name=region, endpoint_url=self.endpoint)
        role = f"arn:aws:iam::{account}:role/PlaybookDeployer"
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.endpoint,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def stack_dir(self, stack: str) -> Path:
        return self.workdir / "rollout" / "environments" / "rollout" / stack


@pytest.fixture(scope="module")
def world(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    del dist  # only its warm plugin cache: this test synthesises its own environment
    work = tmp_path_factory.mktemp("rollout")
    env_file = work / "rollout.yaml"
    with moto_server() as server, pointed_at(server.endpoint):
        env_file.write_text(yaml.safe_dump(_environment(server.endpoint), sort_keys=False))
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=server.endpoint)
        for bucket in (BUCKET, RELEASES):
            s3.create_bucket(Bucket=bucket)
        synth = _main(work / "dist", "synth", "--file", str(env_file))
        assert synth.returncode == 0, synth.stdout + synth.stderr
        override = terraform_override(server.endpoint, SERVICES)
        (work / "override.json").write_text(json.dumps(override))
        backend = work / "backend.hcl"
        backend.write_text(s3_backend_config(server.endpoint))
        workdir = work / "work"
        yield World(
            server.endpoint,
            env_file,
            work / "dist",
            workdir,
            [
                "--override", str(work / "override.json"),
                "--backend-config", str(backend),
                "--workdir", str(workdir),
            ],
            override,
            [str(backend)],
        )  # fmt: skip


@pytest.fixture(scope="module")
def applied(world: World) -> orchestration.Rollout:
    """Waves 1 and 2 applied by the orchestrator itself (its run records when each stack
    started and finished)."""
    environment = environments.load(world.env_file)
    rollout = orchestration.run(
        environment,
        "apply",
        stacks=orchestration.select(environment, [1, 2]),
        dist=world.dist,
        workdir=world.workdir,
        parallel=3,
        backend_config=world.backend_config,
        override=world.override,
    )
    assert rollout.ok, "\n".join(run.error for run in rollout.runs if run.error)
    return rollout


def test_apply_puts_each_stack_in_its_account_with_state_in_s3(
    world: World, applied: orchestration.Rollout
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=world.endpoint)
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    stacks = {run.stack.name: run for run in applied.runs}
    assert sorted(stacks) == ["canary-us-east-1", "team-b-eu-west-1", "team-b-us-east-1"]
    for name, run in stacks.items():
        assert f"{PREFIX}/rollout/{name}/terraform.tfstate" in keys
        assert run.status == "applied" and run.adds > 0 and run.changes == run.destroys == 0
        # The plan and its JSON stay beside the stack.
        assert (run.directory / "tfplan").is_file()
        assert json.loads(run.plan_json.read_text())["resource_changes"]
        topics = world.client("sns", run.stack.account.id, run.stack.region).list_topics()
        arns = [t["TopicArn"] for t in topics["Topics"]]
        assert f"arn:aws:sns:{run.stack.region}:{run.stack.account.id}:playbook-high" in arns
    # The lock file (use_lockfile) is taken in S3 and released after each run.
    assert not [key for key in keys if key.endswith(".tflock")]
    state = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/rollout/team-b-us-east-1/terraform.tfstate")[
            "Body"
        ].read()
    )
    assert state["resources"], "the state in S3 holds what was applied"


def test_waves_run_in_order_and_a_wave_runs_concurrently(applied: orchestration.Rollout) -> None:
    canary = [run for run in applied.runs if run.stack.wave == 1]
    second = [run for run in applied.runs if run.stack.wave == 2]
    assert all(run.finished is not None for run in applied.runs)
    assert max(run.finished or 0 for run in canary) <= min(run.started or 0 for run in second)
    overlapping = [
        (a.stack.name, b.stack.name)
        for a in second
        for b in second
        if a is not b and (a.started or 0) < (b.started or 0) < (a.finished or 0)
    ]
    assert overlapping, "wave 2's stacks ran one after another"


def test_plan_after_apply_changes_nothing_and_a_held_lock_stops_its_stack(
    world: World, applied: orchestration.Rollout
) -> None:
    """One CLI run proves both (a run costs a terraform init and plan per stack): the stacks
    read their state from S3 and plan no change, and the one whose lock file another run
    holds in S3 fails, as it must."""
    del applied
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=world.endpoint)
    lock = f"{PREFIX}/rollout/team-b-eu-west-1/terraform.tfstate.tflock"
    s3.put_object(Bucket=BUCKET, Key=lock, Body=json.dumps({"ID": "other-run", "Who": "ci"}))
    try:
        result = world.cli("plan", "--wave", "1", "--wave", "2", "--parallel", "4")
    finally:
        s3.delete_object(Bucket=BUCKET, Key=lock)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = " ".join(result.stderr.split())
    assert "team-b-eu-west-1" in errors and "state lock" in errors.lower()
    for stack in ("canary-us-east-1", "team-b-us-east-1"):
        plan = json.loads((world.stack_dir(stack) / "tfplan.json").read_text())
        assert orchestration.count_changes(plan) == (0, 0, 0), stack
        assert stack in result.stdout
    assert "planned" in result.stdout and "add" in result.stdout  # the closing table


def test_a_failed_wave_stops_the_rollout(world: World) -> None:
    result = world.cli("plan", "--wave", "3", "--wave", "4")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = " ".join(result.stderr.split())
    assert "broken-us-east-1" in errors and "network_acl_ids names a network ACL" in errors
    assert "wave 3 failed; later waves skipped" in errors
    assert "skipped" in result.stdout
    # The later wave's stack was never initialised, planned or touched.
    assert not (world.stack_dir("after-us-east-1") / "terraform.log").exists()
    assert not (world.stack_dir("after-us-east-1") / ".terraform").exists()


def test_a_pinned_stack_inits_and_validates_from_the_released_archive(world: World) -> None:
    """`release` writes deterministic archives and checksums; the wave-4 account is pinned
    to that release, so its stack takes notifications from the archive in S3."""
    result = _main(world.dist, "release", "--version", RELEASE)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = world.dist / "releases"
    archive = folder / f"notifications-{RELEASE}.zip"
    sums = dict(
        reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    assert sums[archive.name] == hashlib.sha256(archive.read_bytes()).hexdigest()
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["README.md", "function.zip", "main.tf.json"]
    # The same build gives the same bytes.
    again = releases.release(RELEASE, dist=shutil.copytree(world.dist, world.workdir / "again"))
    assert again[archive.name] == sums[archive.name]
    # Building for the release kept the environment's stacks beside the modules.
    assert (world.dist / "environments" / "rollout" / "after-us-east-1").is_dir()

    boto3.client("s3", region_name="us-east-1", endpoint_url=world.endpoint).upload_file(
        str(archive), RELEASES, archive.name, ExtraArgs={"ACL": "public-read"}
    )
    stack = json.loads(
        (world.dist / "environments" / "rollout" / "after-us-east-1" / "main.tf.json").read_text()
    )
    source = stack["module"]["notifications"]["source"]
    assert source == f"{world.endpoint}/{RELEASES}/notifications-{RELEASE}.zip"
    assert (
        json.loads(
            (
                world.dist / "environments" / "rollout" / "canary-us-east-1" / "main.tf.json"
            ).read_text()
        )["module"]["notifications"]["source"]
        == "../../../modules/notifications"
    )
    pinned = world.workdir / "pinned"
    pinned.mkdir()
    (pinned / "main.tf.json").write_text(json.dumps(stack))
    init = tf.run(["init", "-backend=false", "-input=false", "-no-color"], pinned)
    assert init.ok, init.output
    fetched = pinned / ".terraform" / "modules" / "notifications"
    assert (fetched / "main.tf.json").read_bytes() == (
        world.dist / "modules" / "notifications" / "main.tf.json"
    ).read_bytes()
    validate = tf.run(["validate", "-no-color"], pinned)
    assert validate.ok, validate.output
