"""Shared scaffolding of the apply tests: a moto server (and a webhook receiver) per
test module, the environment Terraform and the in-process handlers read, and helpers to
look at what was applied."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from bundle import terraform as tf
from bundle.motoserver import moto_server, pointed_at
from tests.helpers_webhooks import WebhookServer, webhook_server

EVENTS = Path(__file__).resolve().parent.parent / "events"


@dataclass(frozen=True)
class MotoStack:
    endpoint: str
    webhooks: WebhookServer

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.endpoint)


@pytest.fixture(scope="module")
def moto_stack(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoStack]:
    """Request it from a module-scoped autouse fixture, so it exists before the
    pytest-terraform fixture runs `terraform apply`."""
    layer = tmp_path_factory.mktemp("layer") / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
    with moto_server() as server, webhook_server() as webhooks, pointed_at(server.endpoint):
        patch = pytest.MonkeyPatch()
        patch.setenv("TF_CLI_CONFIG_FILE", str(tf.cli_config()))
        patch.setenv("TF_VAR_endpoint", server.endpoint)
        patch.setenv("TF_VAR_layer_zip", str(layer))
        patch.setenv("TF_VAR_webhook_urls", json.dumps(webhooks.urls("slack", "teams", "chime")))
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        try:
            yield MotoStack(server.endpoint, webhooks)
        finally:
            patch.undo()


def outputs(state: Any) -> dict[str, Any]:
    return {name: value["value"] for name, value in state.outputs.items()}


def terraform_in(state: Any, root: Path, args: list[str]) -> tf.Result:
    """Run terraform against the configuration and state pytest-terraform applied."""
    work_dir = state.terraform.work_dir
    return tf.run(args, root, env={"TF_DATA_DIR": work_dir})


def applied_plan(state: Any, root: Path) -> dict[str, Any]:
    """``terraform show -json`` of the plan pytest-terraform applied."""
    result = terraform_in(state, root, ["show", "-json", f"{state.terraform.work_dir}/tfplan"])
    assert result.ok, result.output
    plan: dict[str, Any] = json.loads(result.output)
    return plan


def planned_changes(state: Any, root: Path, *extra: str) -> dict[str, set[str]]:
    """Resources a new plan would touch, with the attributes that differ."""
    plan_file = f"{state.terraform.work_dir}/replan"
    arguments = ["plan", "-input=false", "-no-color", f"-state={state.terraform.state_path}"]
    result = terraform_in(state, root, [*arguments, *extra, f"-out={plan_file}"])
    assert result.ok, result.output
    shown = terraform_in(state, root, ["show", "-json", plan_file])
    changes = {}
    for change in json.loads(shown.output).get("resource_changes", []):
        actions = change["change"]["actions"]
        if actions == ["no-op"] or actions == ["read"]:
            continue
        before, after = change["change"]["before"] or {}, change["change"]["after"] or {}
        differing = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        changes[change["address"]] = {*actions, *differing}
    return changes


def plan_fails(state: Any, root: Path, *extra: str) -> str:
    """Plan ``root`` against the applied state with ``extra`` arguments; the plan must
    fail, and its output (the error) is returned."""
    arguments = ["plan", "-input=false", "-no-color", f"-state={state.terraform.state_path}"]
    result = terraform_in(state, root, [*arguments, *extra])
    assert not result.ok, "the plan was expected to fail:\n" + result.output
    return " ".join(result.output.split())


def finding(name: str, **detail: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    event["detail"].update(detail)
    return event


def probe_rules(stack: MotoStack, rules: list[str]) -> Callable[[dict[str, Any]], set[str]]:
    """Run EventBridge rules' patterns with moto's own matcher.

    moto has no TestEventPattern, and PutEvents fails outright when a matching rule
    targets SNS or Lambda, so each rule's targets are swapped for an SQS probe queue; the
    returned function puts an event on the bus and says which rules matched. Call
    ``restore()`` on it afterwards to put the original targets back.
    """
    events, sqs = stack.client("events"), stack.client("sqs")
    probes, originals = {}, {}
    for rule in rules:
        originals[rule] = events.list_targets_by_rule(Rule=rule)["Targets"]
        events.remove_targets(Rule=rule, Ids=[t["Id"] for t in originals[rule]])
        url = sqs.create_queue(QueueName=f"probe-{rule}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        events.put_targets(
            Rule=rule, Targets=[{"Id": "probe", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        probes[rule] = url

    def routed(event: dict[str, Any]) -> set[str]:
        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
            "Resources": event.get("resources", []),
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        hit = set()
        for rule, url in probes.items():
            for message in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                hit.add(rule)
        return hit

    def restore() -> None:
        for rule, url in probes.items():
            events.remove_targets(Rule=rule, Ids=["probe"])
            events.put_targets(Rule=rule, Targets=originals[rule])
            sqs.delete_queue(QueueUrl=url)

    routed.restore = restore  # type: ignore[attr-defined]
    return routed
