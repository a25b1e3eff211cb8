"""The config_rules catalog and the module synthesised from it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import moto.config
import pytest

from bundle.paths import ROOT
from functions.config_remediator import logic as remediator
from functions.config_remediator.permissions import PERMISSIONS as REMEDIATOR_PERMISSIONS
from functions.dangling_dns.permissions import PERMISSIONS as DANGLING_PERMISSIONS
from modules import REGISTRY
from modules.config_rules_catalog import CATALOG, THREATS, readme_table, terraform_catalog

pytestmark = pytest.mark.synth

# moto ships AWS's published list of managed rules (scraped from the AWS Config developer
# guide's "List of AWS Config Managed Rules"), with each rule's parameters.
PUBLISHED = json.loads(
    gzip.decompress(
        (Path(moto.config.__file__).parent / "resources" / "aws_managed_rules.json.gz").read_bytes()
    )
)["ManagedRules"]


def module_json(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (dist / "modules" / "config_rules" / "main.tf.json").read_text()
    )
    return data


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_catalog_entry_is_a_published_managed_rule(key: str) -> None:
    rule = CATALOG[key]
    assert rule.source in PUBLISHED, f"{key}: {rule.source} is not a published managed rule"
    accepted = {p["Name"] for p in PUBLISHED[rule.source]["Parameters"]}
    assert set(rule.parameter_names) <= accepted, set(rule.parameter_names) - accepted
    required = {p["Name"] for p in PUBLISHED[rule.source]["Parameters"] if not p["Optional"]}
    if rule.enabled:
        assert required <= set(rule.parameters), f"{key} is on but lacks {required}"
    assert rule.threats and set(rule.threats) <= set(THREATS)
    if rule.remediation is not None:
        resource_type, _ = remediator.ACTIONS[rule.remediation]
        assert resource_type in PUBLISHED[rule.source]["Resource Types"]


@pytest.mark.parametrize(
    "key", sorted(k for k, r in CATALOG.items() if r.source == "RESTRICTED_INCOMING_TRAFFIC")
)
def test_a_port_rule_checks_only_the_ports_its_fix_can_close(key: str) -> None:
    """A parameter left out takes its published default (20, 21, 3306, 4333 ...): the rule
    would then report groups NON_COMPLIANT for ports the fix (22/3389) never revokes."""
    rule = CATALOG[key]
    for parameter in PUBLISHED[rule.source]["Parameters"]:
        if "Default" in parameter:
            assert rule.parameters.get(parameter["Name"]) in {"22", "3389"}, parameter


def test_catalog_covers_every_threat_of_the_issue() -> None:
    covered = {threat for rule in CATALOG.values() for threat in rule.threats}
    # subdomain takeover is the dangling-dns custom rule's.
    assert covered | {"subdomain takeover"} == set(THREATS)


def test_every_action_has_a_catalog_rule() -> None:
    assert {r.remediation for r in CATALOG.values()} - {None} == set(remediator.ACTIONS)


def test_module_rules_are_the_catalog(dist: Path) -> None:
    data = module_json(dist)
    assert data["locals"]["catalog"] == terraform_catalog()
    managed = data["resource"]["aws_config_config_rule"]["managed"]
    assert (
        managed["for_each"] == "${var.create && !var.organization_rules ? local.enabled_rules : {}}"
    )
    assert managed["source"]["source_identifier"] == "${each.value.source}"
    organization = data["resource"]["aws_config_organization_managed_rule"]["organization"]
    assert (
        organization["for_each"]
        == "${var.create && var.organization_rules ? local.enabled_rules : {}}"
    )
    assert organization["rule_identifier"] == "${each.value.source}"
    custom = data["resource"]["aws_config_config_rule"]["dangling_dns_rule"]
    assert custom["source"]["owner"] == "CUSTOM_LAMBDA"


def test_recorder_is_optional_and_its_bucket_encrypted(dist: Path) -> None:
    resources = module_json(dist)["resource"]
    optional = "${var.create && var.create_recorder ? 1 : 0}"
    for kind, name in [
        ("aws_config_configuration_recorder", "recorder"),
        ("aws_config_delivery_channel", "delivery_channel"),
        ("aws_config_configuration_recorder_status", "recorder_status"),
        ("aws_s3_bucket", "delivery"),
    ]:
        assert resources[kind][name]["count"] == optional
    encryption = resources["aws_s3_bucket_server_side_encryption_configuration"][
        "delivery_encryption"
    ]
    assert (
        encryption["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"]
        == "aws:kms"
    )
    variables = module_json(dist)["variable"]
    assert variables["create_recorder"]["default"] is False
    assert variables["rules"]["default"] == {}
    assert "auto_remediate = optional(bool, null)" in variables["rules"]["type"]


def test_both_functions_ship_with_their_policies(dist: Path) -> None:
    folder = dist / "modules" / "config_rules"
    for name in ("config_remediator", "dangling_dns"):
        package = "function.zip" if name == "config_remediator" else f"{name}.zip"
        assert (folder / package).read_bytes() == (dist / "functions" / f"{name}.zip").read_bytes()
        function = module_json(dist)["resource"]["aws_lambda_function"][name]
        assert function["filename"] == f"${{path.module}}/{package}"
        policy = module_json(dist)["resource"]["aws_iam_role_policy"][f"{name}_policy"]["policy"]
        permissions = (
            REMEDIATOR_PERMISSIONS if name == "config_remediator" else DANGLING_PERMISSIONS
        )
        for permission in permissions:
            assert f'"{permission.action}"' in policy
    readme = (folder / "README.md").read_text()
    for permission in DANGLING_PERMISSIONS:
        assert f"| `{permission.action}` | {permission.resource} |" in readme


def test_compliance_events_go_to_the_remediator_through_the_house_target(dist: Path) -> None:
    resources = module_json(dist)["resource"]
    pattern = resources["aws_cloudwatch_event_rule"]["compliance_change"]["event_pattern"]
    assert '"aws.config"' in pattern and '"NON_COMPLIANT"' in pattern
    assert "local.remediable_rules" in pattern and "OrgConfigRule-" in pattern
    target = resources["aws_cloudwatch_event_target"]["compliance_change_target"]
    assert target["dead_letter_config"]["arn"] == "${aws_sqs_queue.events_dlq[0].arn}"
    assert target["retry_policy"]["maximum_retry_attempts"] == 185
    environment = module_json(dist)["locals"]["config_remediator_environment"]
    assert "local.remediable_rules" in environment["RULES"]
    assert environment["DRY_RUN"] == "${var.dry_run_enabled}"


def test_rules_input_is_checked_in_the_environment_schema() -> None:
    from bundle.inputs import parameters_model

    module = REGISTRY["config_rules"]
    model = parameters_model("config_rules", module.all_inputs())
    model(rules={"restricted-ssh": {"auto_remediate": True}})
    with pytest.raises(ValueError, match="catalog rule"):
        model(rules={"no-such-rule": {"enabled": True}})
    with pytest.raises(ValueError, match="not one the managed rule accepts"):
        model(rules={"restricted-ssh": {"parameters": {"maxAccessKeyAge": "1"}}})


def test_readme_catalog_table_is_generated_from_the_catalog() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in readme_table():
        assert line in readme, f"README.md lacks the catalog line: {line}"
