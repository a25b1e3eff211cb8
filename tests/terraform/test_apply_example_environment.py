"""Apply every stack of the example environment (two accounts, two regions each) into one
moto server, as a pipeline would: the stacks `python main.py synth` generates, run with
the real Terraform CLI and AWS provider, then planned again (each module's own apply
test proves its destroy).

This is the test that sees what one module in one region cannot: names AWS keeps per
account (IAM roles, Shield protection groups) must differ between the regions of one
account, and region-bound settings (a network ACL id) must reach one region only.

What differs from a real pipeline, and why:
- Each stack gets an override file (``override.tf.json``, merged by Terraform): the
  provider talks to moto with fake base credentials, and the stack's own ``assume_role``
  into each account's deployer role goes through moto's STS, which keeps each account's
  resources apart by the account of the assumed credentials; the state goes to a local
  file instead of the S3 backend.
- moto rejects unknown layer ARNs, so a stand-in Powertools layer is published in every
  account and region and given to the modules through ``region_modules`` (per-region
  settings, the feature under test).
- moto generates network ACL ids, so the ACL is created first and its id replaces the
  example's.
- ``https_endpoints`` are left out: moto POSTs to https subscribers itself, and nothing
  leaves this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from bundle import environments
from bundle import terraform as tf
from bundle.paths import ENVIRONMENTS, ROOT
from tests.terraform.conftest import MotoStack

pytestmark = pytest.mark.e2e

EXAMPLE = ENVIRONMENTS / "example.yaml"
SERVICES = (
    "cloudwatch", "dynamodb", "ec2", "elbv2", "events", "iam", "kms", "lambda", "logs",
    "secretsmanager", "shield", "sns", "sqs", "sts", "wafv2",
)  # fmt: skip


@dataclass
class Applied:
    stacks: dict[str, Path]  # stack name -> its folder
    outputs: dict[str, dict[str, Any]]
    acl_id: str
    server: MotoStack

    def session(self, account: str, region: str) -> boto3.Session:
        """Credentials of ``account``'s deployer role, assumed through moto's STS."""
        role = f"arn:aws:iam::{account}:role/PlaybookDeployer"
        sts = boto3.client("sts", region_name=region, endpoint_url=self.server.endpoint)
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
        return boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=region,
        )

    def client(self, service: str, account: str, region: str) -> Any:
        return self.session(account, region).client(service, endpoint_url=self.server.endpoint)


def _run(args: list[str], directory: Path) -> tf.Result:
    result = tf.run(args, directory)
    assert result.ok, f"terraform {' '.join(args)} in {directory.name}:\n{result.output}"
    return result


def _in_parallel(work: Any, items: list[Any]) -> list[Any]:
    # Terraform spends most of an apply waiting on the API (SQS attributes alone take
    # ~25 s to settle), so the four stacks run side by side.
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(work, items))


def _stand_ins(applied: Applied, stacks: list[environments.Stack], layer: Path) -> dict[str, Any]:
    """Publish a stand-in layer per account and region, create the guarded ACL, and return
    the example environment rewritten to use them."""
    data = yaml.safe_load(EXAMPLE.read_text())
    by_account = {account["id"]: account for account in data["accounts"]}
    for stack in stacks:
        region, account = stack.region, stack.account.id
        published = applied.client("lambda", account, region).publish_layer_version(
            LayerName="powertools-stand-in",
            Content={"ZipFile": layer.read_bytes()},
            CompatibleRuntimes=["python3.12"],
        )
        settings = by_account[account].setdefault("region_modules", {}).setdefault(region, {})
        for module in stack.modules:
            settings.setdefault(module, {})["powertools_layer_arn"] = published["LayerVersionArn"]
            settings[module].pop("https_endpoints", None)
        if "nacl_blocklist" in stack.modules:
            ec2 = applied.client("ec2", account, region)
            vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
            acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
            settings["nacl_blocklist"]["network_acl_ids"] = [acl]
            applied.acl_id = acl
    for account in data["accounts"]:
        account.get("modules", {}).get("notifications", {}).pop("https_endpoints", None)
    return dict(data)


def _override(endpoint: str, state: Path) -> dict[str, Any]:
    return {
        "provider": {
            "aws": {
                "access_key": "testing",
                "secret_key": "testing",
                "skip_metadata_api_check": True,
                "max_retries": 3,
                "endpoints": {service: endpoint for service in SERVICES},
            }
        },
        "terraform": {"backend": {"local": {"path": str(state)}}},
    }


@pytest.fixture(scope="module")
def example(moto_stack: MotoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    work = tmp_path_factory.mktemp("example-environment")
    applied = Applied({}, {}, "", moto_stack)
    stacks = list(environments.load(EXAMPLE).stacks)
    layer = work / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
    environment = work / "environments" / "example.yaml"
    environment.parent.mkdir()
    environment.write_text(yaml.safe_dump(_stand_ins(applied, stacks, layer), sort_keys=False))

    # The user's command, into a folder of the test's own (dist/ belongs to the session).
    synth = subprocess.run(
        [sys.executable, "main.py", "synth", "--file", str(environment)],
        cwd=ROOT,
        env={**os.environ, "PLAYBOOK_DIST": str(work / "dist")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert synth.returncode == 0, synth.stdout + synth.stderr
    for folder in sorted((work / "dist" / "environments" / "example").iterdir()):
        override = _override(moto_stack.endpoint, work / "state" / f"{folder.name}.tfstate")
        (folder / "override.tf.json").write_text(json.dumps(override, indent=2))
        applied.stacks[folder.name] = folder
    assert sorted(applied.stacks) == sorted(stack.name for stack in stacks)

    def apply(folder: Path) -> dict[str, Any]:
        _run(["init", "-input=false", "-no-color"], folder)
        _run(["apply", "-input=false", "-no-color", "-auto-approve"], folder)
        shown = _run(["output", "-json"], folder).output
        return {name: value["value"] for name, value in json.loads(shown).items()}

    folders = list(applied.stacks.values())
    for folder, outputs in zip(folders, _in_parallel(apply, folders), strict=True):
        applied.outputs[folder.name] = outputs
    # Not destroyed: each module's own apply test destroys it and checks nothing is left,
    # and everything here ends with the moto server (four stacks' destroy cost minutes of
    # the test-time budget and proved nothing those tests do not).
    yield applied


ACCOUNTS = {"security-tooling": "111111111111", "workloads-prod": "222222222222"}
REGIONS = ("us-east-1", "eu-west-1")


def test_names_aws_keeps_per_account_differ_between_regions(example: Applied) -> None:
    for account in ACCOUNTS.values():
        roles = {
            role["RoleName"]
            for role in example.client("iam", account, "us-east-1").list_roles()["Roles"]
        }
        for function in ("notifier", "waf-blocker"):
            assert {f"playbook-{function}-{region}" for region in REGIONS} <= roles, account


def test_each_stack_runs_in_its_own_account_and_region(example: Applied) -> None:
    for account_name, account in ACCOUNTS.items():
        for region in REGIONS:
            outputs = example.outputs[f"{account_name}-{region}"]
            for arn in (
                outputs["waf_shield_web_acl_arn"],
                outputs["notifications_notifier_function_arn"],
            ):
                assert arn.split(":")[3:5] == [region, account], arn


def test_region_bound_settings_reach_their_region_only(example: Applied) -> None:
    """The example gives its network ACL to workloads-prod in us-east-1 alone."""
    guarded = example.outputs["workloads-prod-us-east-1"]
    assert guarded["nacl_blocklist_guarded_network_acl_ids"] == [example.acl_id]
    for other in ("workloads-prod-eu-west-1", "security-tooling-us-east-1"):
        assert not any(name.startswith("nacl_blocklist_") for name in example.outputs[other])
    functions = example.client("lambda", ACCOUNTS["workloads-prod"], "eu-west-1").list_functions()
    assert "playbook-nacl-blocker" not in {f["FunctionName"] for f in functions["Functions"]}


def test_a_second_plan_changes_nothing(example: Applied) -> None:
    """The only differences allowed are moto's own: it drops Lambda DeadLetterConfig, so the
    provider wants to set it again on each function, and it returns a queue's RedrivePolicy
    as JSON with spaces, which the provider plans as a whitespace change of the blockers'
    intake queues (AWS answers the compact JSON it was given)."""

    def changes(folder: Path) -> set[str]:
        _run(["plan", "-input=false", "-no-color", "-out=replan"], folder)
        shown = json.loads(_run(["show", "-json", "replan"], folder).output)
        return {
            change["address"]
            for change in shown.get("resource_changes", [])
            if change["change"]["actions"] not in (["no-op"], ["read"])
        }

    functions = {
        f"module.{module}.aws_lambda_function.{function}[0]"
        for module, function in (
            ("notifications", "notifier"),
            ("waf_shield", "waf_blocker"),
            ("nacl_blocklist", "nacl_blocker"),
        )
    }
    functions |= {
        f"module.{module}.aws_sqs_queue.{function}_intake[0]"
        for module, function in (("waf_shield", "waf_blocker"), ("nacl_blocklist", "nacl_blocker"))
    }
    folders = list(example.stacks.values())
    for folder, changed in zip(folders, _in_parallel(changes, folders), strict=True):
        assert changed <= functions, (folder.name, changed - functions)
