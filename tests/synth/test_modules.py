"""Assertions on the synthesised module and stack JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bundle.paths import ROOT
from bundle.versions import AWS_PROVIDER_CONSTRAINT
from modules import REGISTRY

pytestmark = pytest.mark.synth

OUTPUT_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*_(arn|arns|id|ids|name|names|url)$")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def module(request: pytest.FixtureRequest, dist: Path) -> tuple[str, dict[str, Any], Path]:
    folder = dist / "modules" / request.param
    return request.param, load(folder / "main.tf.json"), folder


def test_module_has_no_provider_backend_or_metadata(
    module: tuple[str, dict[str, Any], Path],
) -> None:
    _, data, _ = module
    assert "provider" not in data
    assert "backend" not in data["terraform"]
    assert '"//":' not in json.dumps(data), "cdktn metadata must be stripped"


def test_module_declares_versions(module: tuple[str, dict[str, Any], Path]) -> None:
    _, data, _ = module
    assert data["terraform"]["required_version"].startswith(">=")
    aws = data["terraform"]["required_providers"]["aws"]
    assert aws == {"source": "hashicorp/aws", "version": AWS_PROVIDER_CONSTRAINT}


def test_module_has_no_absolute_path_or_timestamp(module: tuple[str, dict[str, Any], Path]) -> None:
    _, _, folder = module
    text = (folder / "main.tf.json").read_text()
    assert str(ROOT) not in text
    assert "/tmp/" not in text
    assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text), "no timestamps in generated code"


def test_every_input_is_a_described_typed_variable(
    module: tuple[str, dict[str, Any], Path],
) -> None:
    name, data, _ = module
    variables = data["variable"]
    expected = {item.name for item in REGISTRY[name].all_inputs()}
    assert set(variables) == expected
    for variable_name, block in variables.items():
        assert block["type"], variable_name
        assert len(block["description"]) > 20, variable_name
    assert variables["create"] == {
        "default": True,
        "description": variables["create"]["description"],
        "nullable": False,
        "type": "bool",
    }


def test_constrained_inputs_have_validation(module: tuple[str, dict[str, Any], Path]) -> None:
    name, data, _ = module
    for item in REGISTRY[name].all_inputs():
        block = data["variable"][item.name]
        if item.rules or item.each:
            conditions = [v["condition"] for v in block["validation"]]
            assert len(conditions) == len(item.rules) + len(item.each)
            assert all(c.startswith("${") and f"var.{item.name}" in c for c in conditions)
            assert all(v["error_message"].endswith(".") for v in block["validation"])
        else:
            assert "validation" not in block


def test_every_resource_obeys_create(module: tuple[str, dict[str, Any], Path]) -> None:
    _, data, _ = module
    for resource_type, resources in data["resource"].items():
        for resource_name, block in resources.items():
            guard = block.get("count") or block.get("for_each")
            assert guard, f"{resource_type}.{resource_name} has neither count nor for_each"
            chain = json.dumps(guard)
            # either it tests var.create itself, or it iterates something that does
            assert "var.create" in chain or re.search(r"aws_[a-z_]+\.[a-z_]+", chain), (
                f"{resource_type}.{resource_name}: {guard}"
            )


def test_outputs_follow_naming_and_are_described(module: tuple[str, dict[str, Any], Path]) -> None:
    name, data, _ = module
    declared = {o.name for o in REGISTRY[name].outputs}
    assert set(data["output"]) == declared
    for output_name, block in data["output"].items():
        assert OUTPUT_NAME.match(output_name), output_name
        assert block["description"]


def test_taggable_resources_carry_module_tags(module: tuple[str, dict[str, Any], Path]) -> None:
    _, data, _ = module
    assert '"ManagedBy": "playbook-as-code"' in data["locals"]["module_tags"]
    for resource_type in (
        "aws_kms_key",
        "aws_sns_topic",
        "aws_sqs_queue",
        "aws_lambda_function",
        "aws_iam_role",
        "aws_cloudwatch_log_group",
        "aws_cloudwatch_event_rule",
    ):
        for resource_name, block in data["resource"].get(resource_type, {}).items():
            assert "local.module_tags" in block["tags"], f"{resource_type}.{resource_name}"


def test_function_zip_sits_beside_the_module(
    module: tuple[str, dict[str, Any], Path], dist: Path
) -> None:
    name, data, folder = module
    function = REGISTRY[name].function
    if function is None:
        pytest.skip(f"{name} has no remediator")
    lambda_block = data["resource"]["aws_lambda_function"][function]
    assert lambda_block["filename"] == "${path.module}/function.zip"
    assert "filebase64sha256" in lambda_block["source_code_hash"]
    assert (folder / "function.zip").read_bytes() == (
        dist / "functions" / f"{function}.zip"
    ).read_bytes()
    assert lambda_block["tracing_config"] == {"mode": "Active"}
    assert "dead_letter_config" in lambda_block
    assert lambda_block["reserved_concurrent_executions"] == "${var.reserved_concurrency}"


def test_module_readme_lists_inputs_and_outputs(module: tuple[str, dict[str, Any], Path]) -> None:
    name, data, folder = module
    readme = (folder / "README.md").read_text()
    for variable_name in data["variable"]:
        assert f"| `{variable_name}` |" in readme
    for output_name in data["output"]:
        assert f"| `{output_name}` |" in readme
    function = REGISTRY[name].function
    assert "## Limits" in readme, "what AWS enforces and the module checks"
    if function:
        from bundle.module import declared_permissions

        for permission in declared_permissions(function):
            assert f"| `{permission.action}` | {permission.resource} |" in readme


def test_notifications_resources(dist: Path) -> None:
    data = load(dist / "modules" / "notifications" / "main.tf.json")
    resources = data["resource"]
    key = resources["aws_kms_key"]["this"]
    assert key["enable_key_rotation"] is True
    policy = key["policy"]
    for principal in (
        "events.amazonaws.com",
        "sns.amazonaws.com",
        "logs.${data.aws_region.region.id}.amazonaws.com",
    ):
        assert principal in policy
    topics = resources["aws_sns_topic"]
    assert topics["severity"]["for_each"] == "${var.create ? toset(var.severities) : toset([])}"
    assert all("kms_master_key_id" in topic for topic in topics.values())
    topic_policy = resources["aws_sns_topic_policy"]["severity_policy"]["policy"]
    assert "events.amazonaws.com" in topic_policy and "aws:SourceAccount" in topic_policy
    subscriptions = resources["aws_sns_topic_subscription"]
    assert subscriptions["email_subscription"]["protocol"] == "email"
    assert subscriptions["https_subscription"]["protocol"] == "https"
    assert subscriptions["notifier_subscription"]["protocol"] == "lambda"
    secrets = json.dumps(resources)
    assert "hooks.slack.com" not in secrets and "webhook.office.com" not in secrets


def test_notifier_policy_is_generated_from_declared_permissions(dist: Path) -> None:
    from functions.notifier.permissions import PERMISSIONS

    data = load(dist / "modules" / "notifications" / "main.tf.json")
    policy = data["resource"]["aws_iam_role_policy"]["notifier_policy"]["policy"]
    for permission in PERMISSIONS:
        assert f'"{permission.action}"' in policy
    assert '"*"' not in policy, "no wildcard resource in the generated policy"
    assert 'Action = "*"' not in policy
    actions = set(re.findall(r'"([a-z0-9]+:[A-Za-z*]+)"', policy))
    infrastructure = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
    assert actions - infrastructure == {p.action for p in PERMISSIONS}


def test_stacks_compose_modules_per_account_and_region(dist: Path) -> None:
    stacks = sorted((dist / "environments" / "example").iterdir())
    assert [s.name for s in stacks] == [
        "security-tooling-eu-west-1",
        "security-tooling-us-east-1",
        "workloads-prod-eu-west-1",
        "workloads-prod-us-east-1",
    ]
    data = load(dist / "environments" / "example" / "workloads-prod-eu-west-1" / "main.tf.json")
    provider = data["provider"]["aws"][0]
    assert provider["region"] == "eu-west-1"
    assert provider["allowed_account_ids"] == ["222222222222"]
    assert (
        provider["assume_role"][0]["role_arn"] == "arn:aws:iam::222222222222:role/PlaybookDeployer"
    )
    assert provider["default_tags"][0]["tags"]["DataClassification"] == "confidential"
    assert provider["default_tags"][0]["tags"]["Owner"] == "security-engineering"
    backend = data["terraform"]["backend"]["s3"]
    assert backend["key"] == "playbook-as-code/example/workloads-prod-eu-west-1/terraform.tfstate"
    assert backend["use_lockfile"] is True and backend["encrypt"] is True
    call = data["module"]["notifications"]
    assert call["source"] == "../../../modules/notifications"
    assert (
        dist / "environments" / "example" / "workloads-prod-eu-west-1" / call["source"]
    ).resolve() == (dist / "modules" / "notifications").resolve()
    assert call["email_addresses"] == ["prod-oncall@example.com", "secops@example.com"]
    assert call["webhook_secret_name"] == "playbook/notifier-webhooks"  # from defaults
    assert set(data["output"]) >= {"notifications_topic_arns", "notifications_kms_key_arn"}


def test_committed_module_docs_are_current() -> None:
    from bundle.readme import module_readme

    for name, module in REGISTRY.items():
        committed = (ROOT / "docs" / "modules" / f"{name}.md").read_text()
        assert committed == module_readme(module, None), f"run `python main.py docs` ({name})"


def test_waf_shield_resources(dist: Path) -> None:
    data = load(dist / "modules" / "waf_shield" / "main.tf.json")
    resources = data["resource"]
    for version in (4, 6):
        blocklist = resources["aws_wafv2_ip_set"][f"block_ipv{version}"]
        assert blocklist["lifecycle"]["ignore_changes"] == ["addresses"], "the remediator owns them"
        assert blocklist["ip_address_version"] == f"IPV{version}"
    acl = resources["aws_wafv2_web_acl"]["web_acl"]
    assert [(r["name"], r["priority"]) for r in acl["rule"]] == [
        ("blocklist-ipv4", 2),
        ("blocklist-ipv6", 3),
    ]
    assert len(acl["dynamic"]["rule"]) == 3, "allowlist bypass, rate rules, managed groups"
    assert {p["error_message"][:20] for p in acl["lifecycle"]["precondition"]}
    log_group = resources["aws_cloudwatch_log_group"]["waf_logs"]
    assert log_group["name"].startswith("aws-waf-logs-")
    assert "kms_key_id" in log_group
    table = resources["aws_dynamodb_table"]["state"]
    assert table["ttl"] == {"attribute_name": "expires_at", "enabled": True}
    assert table["hash_key"] == "pk"
    lambda_block = resources["aws_lambda_function"]["waf_blocker"]
    assert lambda_block["environment"]["variables"] == "${local.waf_blocker_environment}"
    assert set(data["locals"]["waf_blocker_environment"]) >= {
        "STATE_TABLE", "IPV4_SET_NAME", "IPV4_SET_ID", "IPV6_SET_NAME", "IPV6_SET_ID",
        "IP_SET_SCOPE", "ALLOWLIST_CIDRS", "BLOCK_TTL_SECONDS", "SEVERITY_THRESHOLD",
        "MAX_ADDRESSES_PER_SET", "NOTIFY_TOPIC_ARN",
    }  # fmt: skip
    assert lambda_block["timeout"] >= 30, "the WAF lock retries need up to ~9 s"
    pattern = resources["aws_cloudwatch_event_rule"]["waf_blocker_findings"]["event_pattern"]
    assert "var.severity_threshold" in pattern and "Recon:EC2/PortProbeUnprotectedPort" in pattern
    assert resources["aws_cloudwatch_event_target"]["waf_blocker_sweep_target"]["input"] == (
        '{"action": "sweep"}'
    )
    assert data["variable"]["create_shield_protections"]["default"] is False, "costs money"


def test_waf_blocker_policy_is_generated_from_declared_permissions(dist: Path) -> None:
    from functions.waf_blocker.permissions import PERMISSIONS

    data = load(dist / "modules" / "waf_shield" / "main.tf.json")
    policy = data["resource"]["aws_iam_role_policy"]["waf_blocker_policy"]["policy"]
    actions = set(re.findall(r'"([a-z0-9]+:[A-Za-z*]+)"', policy))
    infrastructure = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
    service = {p.action for p in REGISTRY["waf_shield"].service_permissions}
    assert actions - infrastructure == {p.action for p in PERMISSIONS} | service
    assert "aws_wafv2_ip_set.block_ipv4[*].arn" in policy
    assert "aws_wafv2_ip_set.allow_ipv4" not in policy, "the remediator never edits the allowlist"
    assert '"*"' not in policy


def test_nacl_blocklist_resources(dist: Path) -> None:
    data = load(dist / "modules" / "nacl_blocklist" / "main.tf.json")
    resources = data["resource"]
    function = resources["aws_lambda_function"]["nacl_blocker"]
    variables = data["locals"]["nacl_blocker_environment"]
    assert variables["NACL_IDS"] == "${jsonencode(local.guarded_acls)}"
    assert variables["DIRECTIONS"].startswith("${jsonencode(var.egress_enabled")
    conditions = [p["condition"] for p in function["lifecycle"]["precondition"]]
    assert "${var.rule_number_end >= var.rule_number_start}" in conditions
    assert any("var.capacity" in c for c in conditions)
    lookups = data["data"]["aws_network_acls"]
    assert "association.subnet-id" in json.dumps(lookups["from_subnets"])
    assert lookups["from_subnets"]["count"] == "${var.create ? length(var.subnet_ids) : 0}"
    assert "network-acl-id" in json.dumps(lookups["by_id"])
    for lookup in lookups.values():
        assert lookup["lifecycle"]["postcondition"], "a missing ACL fails the plan"
    assert data["variable"]["capacity"]["validation"][0]["condition"].endswith(
        "<= 20 && floor(var.capacity) == var.capacity}"
    )
    policy = resources["aws_iam_role_policy"]["nacl_blocker_policy"]["policy"]
    assert "network-acl/${id}" in policy, "scoped to the guarded ACLs"
    from functions.nacl_blocker.permissions import PERMISSIONS

    actions = set(re.findall(r'"([a-z0-9]+:[A-Za-z*]+)"', policy))
    service = {p.action for p in REGISTRY["nacl_blocklist"].service_permissions}
    infrastructure = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
    assert actions - infrastructure == {p.action for p in PERMISSIONS} | service
    # Only Describe calls get a wildcard resource, and the permission says why.
    wildcard = [p for p in PERMISSIONS if p.resource == "describe"]
    assert {p.action for p in wildcard} <= {"ec2:DescribeNetworkAcls", "ec2:DescribeInstances"}


def test_modules_compose_in_a_stack(dist: Path) -> None:
    data = load(dist / "environments" / "example" / "workloads-prod-us-east-1" / "main.tf.json")
    assert set(data["module"]) == {"nacl_blocklist", "notifications", "waf_shield"}
    nacl = data["module"]["nacl_blocklist"]
    assert nacl["notify_topic_arn"] == '${module.notifications.topic_arns["high"]}'
    assert nacl["source"] == "../../../modules/nacl_blocklist"
    security = load(
        dist / "environments" / "example" / "security-tooling-us-east-1" / "main.tf.json"
    )
    assert "nacl_blocklist" not in security["module"], "only the account that lists it"


# --------------------------------------------------------------------------- real accounts
# What AWS enforces and moto does not (issue 7); the apply tests show the behaviour.


def resources_of(data: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found: dict[str, Any] = data["resource"].get(resource_type, {})
    return found


def test_account_global_names_carry_the_region(module: tuple[str, dict[str, Any], Path]) -> None:
    """IAM role names and Shield protection group ids are unique per account, not per
    region: the same module applied in two regions of an account must not collide."""
    _, data, _ = module
    region = "${data.aws_region.region.id}"
    for name, role in resources_of(data, "aws_iam_role").items():
        assert region in role["name"], name
        assert role["lifecycle"]["precondition"], "IAM's 64-character limit is checked at plan"
    for name, group in resources_of(data, "aws_shield_protection_group").items():
        assert region in group["protection_group_id"], name


def test_every_role_takes_the_landing_zone_path_and_boundary(
    module: tuple[str, dict[str, Any], Path],
) -> None:
    _, data, _ = module
    for name, role in resources_of(data, "aws_iam_role").items():
        assert role["path"] == "${var.iam_role_path}", name
        assert "var.iam_permissions_boundary_arn" in role["permissions_boundary"], name


def test_every_event_target_retries_and_keeps_what_it_cannot_deliver(
    module: tuple[str, dict[str, Any], Path],
) -> None:
    _, data, _ = module
    targets = resources_of(data, "aws_cloudwatch_event_target")
    assert targets
    for name, target in targets.items():
        assert target["retry_policy"] == {
            "maximum_event_age_in_seconds": 86400,
            "maximum_retry_attempts": 185,
        }, name
        assert target["dead_letter_config"] == {"arn": "${aws_sqs_queue.events_dlq[0].arn}"}
    queue = resources_of(data, "aws_sqs_queue")["events_dlq"]
    assert "events.amazonaws.com" in queue["policy"] and "aws:SourceArn" in queue["policy"]
    assert "events.amazonaws.com" in resources_of(data, "aws_kms_key")["this"]["policy"]


def test_failures_raise_alarms_that_reach_people(module: tuple[str, dict[str, Any], Path]) -> None:
    name, data, _ = module
    alarms = resources_of(data, "aws_cloudwatch_metric_alarm")
    function = REGISTRY[name].function
    assert function is not None
    expected = {f"{function}_errors", f"{function}_dlq_depth", "events_dlq_depth"}
    assert set(alarms) >= expected
    for alarm_name, alarm in alarms.items():
        assert alarm["alarm_actions"] == alarm["ok_actions"], alarm_name
        assert alarm["alarm_actions"].startswith("${"), alarm_name
        assert alarm["threshold"] == 0 and alarm["treat_missing_data"] == "notBreaching"
    if name == "notifications":
        assert "aws_sns_topic.email" in alarms["notifier_errors"]["alarm_actions"]
    else:
        assert "var.notify_topic_arn" in alarms[f"{function}_errors"]["alarm_actions"]


def test_reserved_concurrency_is_optional(module: tuple[str, dict[str, Any], Path]) -> None:
    """Accounts whose concurrency quota is 10 cannot reserve any."""
    _, data, _ = module
    assert data["variable"]["reserved_concurrency"]["default"] == -1


def test_lambda_environment_size_is_checked_at_plan(
    module: tuple[str, dict[str, Any], Path],
) -> None:
    name, data, _ = module
    function = REGISTRY[name].function
    block = resources_of(data, "aws_lambda_function")[function]
    # Modules add their own preconditions beside this one (nacl_blocklist, forensics).
    (check,) = [p for p in block["lifecycle"]["precondition"] if "4 KB" in p["error_message"]]
    assert f"local.{function}_environment" in check["condition"] and "4096" in check["condition"]


def test_notifications_admit_cloudwatch_alarms(dist: Path) -> None:
    data = load(dist / "modules" / "notifications" / "main.tf.json")
    policy = data["resource"]["aws_sns_topic_policy"]["severity_policy"]["policy"]
    assert "cloudwatch.amazonaws.com" in policy
    assert "cloudwatch.amazonaws.com" in data["resource"]["aws_kms_key"]["this"]["policy"]


def test_blocking_defaults_act_on_low_findings_for_as_long_as_guardduty_reports_them(
    dist: Path,
) -> None:
    for name in ("waf_shield", "nacl_blocklist"):
        data = load(dist / "modules" / name / "main.tf.json")
        variables = data["variable"]
        assert variables["severity_threshold"]["default"] == 1.0
        assert variables["guardduty_finding_publishing_frequency"]["default"] == "SIX_HOURS"
        assert variables["block_ttl_seconds"]["default"] == 0
        function = REGISTRY[name].function
        ttl = data["locals"][f"{function}_environment"]["BLOCK_TTL_SECONDS"]
        assert "var.guardduty_finding_publishing_frequency" in ttl and "2 *" in ttl
        allowlist = [v["condition"] for v in variables["allowlist_cidrs"]["validation"]]
        assert any("length(jsonencode(var.allowlist_cidrs)) <= 3000" in c for c in allowlist)


def test_waf_shield_plans_with_arns_unknown_until_apply(dist: Path) -> None:
    """for_each keys must be known at plan: the maps' names, never the ARNs."""
    resources = load(dist / "modules" / "waf_shield" / "main.tf.json")["resource"]
    association = resources["aws_wafv2_web_acl_association"]["web_acl_association"]
    assert association["for_each"].endswith("? var.associated_resource_arns : {}}")
    protection = resources["aws_shield_protection"]["shield"]
    assert protection["for_each"].endswith("? var.shield_resource_arns : {}}")
    assert protection["name"] == "${var.name_prefix}-${each.key}"
    mitigation = resources["aws_shield_application_layer_automatic_response"]
    response = mitigation["shield_auto_mitigation"]
    assert response["for_each"].endswith("? var.shield_automatic_mitigation : {}}")
    assert set(response["depends_on"]) == {
        "aws_shield_protection.shield",
        "aws_wafv2_web_acl_association.web_acl_association",
    }, "Shield mitigates only once the web ACL is on the resource"
    group = resources["aws_shield_protection_group"]["shield_group"]
    assert "36" in group["lifecycle"]["precondition"][0]["condition"]
    messages = " ".join(
        p["error_message"]
        for p in resources["aws_wafv2_web_acl"]["web_acl"]["lifecycle"]["precondition"]
    )
    assert "must also be in associated_resource_arns" in messages
    assert "rule name" in messages


def test_waf_shield_rules_exempt_the_allowlist_and_normalise_login_paths(dist: Path) -> None:
    data = load(dist / "modules" / "waf_shield" / "main.tf.json")
    acl = data["resource"]["aws_wafv2_web_acl"]["web_acl"]
    for rule in acl["rule"]:
        statements = rule["statement"]["and_statement"]["statement"]
        assert "ip_set_reference_statement" in statements[0]
        exempt = statements[1]["not_statement"]["statement"]["ip_set_reference_statement"]
        assert exempt["arn"].startswith("${aws_wafv2_ip_set.allow_ipv")
        assert rule["visibility_config"]["sampled_requests_enabled"] == (
            "${var.sampled_requests_enabled}"
        )
    bypass, rate, _ = acl["dynamic"]["rule"]
    assert bypass["for_each"].startswith("${var.allowlist_bypass_enabled ?")
    assert data["variable"]["allowlist_bypass_enabled"]["default"] is False
    assert data["variable"]["sampled_requests_enabled"]["default"] is False
    scope_down = rate["content"]["statement"]["rate_based_statement"]["dynamic"][
        "scope_down_statement"
    ]["content"]["dynamic"]["byte_match_statement"]["content"]
    assert scope_down["text_transformation"] == [
        {"priority": 0, "type": "URL_DECODE"},
        {"priority": 1, "type": "NORMALIZE_PATH"},
        {"priority": 2, "type": "LOWERCASE"},
    ]
    assert scope_down["search_string"] == "${lower(byte_match_statement.value)}"


def test_blocking_modules_take_the_block_ip_action_and_answer_their_roles(dist: Path) -> None:
    for name, outbound in (("waf_shield", False), ("nacl_blocklist", True)):
        data = load(dist / "modules" / name / "main.tf.json")
        function = REGISTRY[name].function
        assert data["variable"]["block_ip_action_arn"]["default"] == ""
        environment = data["locals"][f"{function}_environment"]
        assert environment["BLOCK_IP_ACTION_ARN"] == "${var.block_ip_action_arn}"
        rules = data["resource"]["aws_cloudwatch_event_rule"]
        rule = rules[f"{function}_block_ip"]
        assert 'var.block_ip_action_arn != ""' in rule["count"], "no ARN, no rule"
        pattern = rule["event_pattern"]
        assert json.loads(pattern.replace("${var.block_ip_action_arn}", "ARN")) == {
            "source": ["aws.securityhub"],
            "detail-type": ["Security Hub Findings - Custom Action"],
            "resources": ["ARN"],
        }
        target = data["resource"]["aws_cloudwatch_event_target"][f"{function}_block_ip_target"]
        assert target["count"] == rule["count"]
        findings = rules[f"{function}_findings"]["event_pattern"]
        assert "UnauthorizedAccess:EC2/TorIPCaller" in findings
        assert ("Backdoor:EC2/C&CActivity.B" in findings) is outbound, "WAF: inbound only"


def test_blocking_modules_put_a_queue_in_front_of_the_remediator(dist: Path) -> None:
    for name in ("waf_shield", "nacl_blocklist"):
        data = load(dist / "modules" / name / "main.tf.json")
        function = REGISTRY[name].function
        resources = data["resource"]
        queue = resources["aws_sqs_queue"][f"{function}_intake"]
        assert queue["kms_master_key_id"] == "${aws_kms_key.this[0].arn}"
        assert f"aws_sqs_queue.{function}_dlq[0].arn" in queue["redrive_policy"]
        timeout = resources["aws_lambda_function"][function]["timeout"]
        assert queue["visibility_timeout_seconds"] == (
            f"${{6 * {timeout} + var.queue_batch_window_seconds}}"
        ), "six times the function timeout plus the batch window (AWS)"
        policy = queue["policy"]
        assert 'Principal = {Service = "events.amazonaws.com"}' in policy
        assert '"aws:SourceArn" = concat(' in policy
        for trigger in ("findings", "block_ip"):
            assert f"aws_cloudwatch_event_rule.{function}_{trigger}[*].arn" in policy
            target = resources["aws_cloudwatch_event_target"][f"{function}_{trigger}_target"]
            assert target["arn"] == f"${{aws_sqs_queue.{function}_intake[0].arn}}"
            assert f"{function}_{trigger}_invoke" not in resources["aws_lambda_permission"]
        sweep = resources["aws_cloudwatch_event_target"][f"{function}_sweep_target"]
        assert sweep["arn"] == f"${{aws_lambda_function.{function}[0].arn}}", "sweep stays direct"
        assert f"{function}_sweep_invoke" in resources["aws_lambda_permission"]
        mapping = resources["aws_lambda_event_source_mapping"][f"{function}_intake_mapping"]
        assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
        assert mapping["batch_size"] == "${var.queue_batch_size}"
        assert mapping["maximum_batching_window_in_seconds"] == (
            "${var.queue_batch_window_seconds}"
        )
        assert mapping["scaling_config"] == {
            "maximum_concurrency": "${var.queue_maximum_concurrency}"
        }
        assert mapping["depends_on"] == [f"aws_iam_role_policy.{function}_policy"]
        conditions = " ".join(p["condition"] for p in mapping["lifecycle"]["precondition"])
        assert "var.reserved_concurrency > var.queue_maximum_concurrency" in conditions
        assert "var.queue_batch_window_seconds >= 1" in conditions
        variables = data["variable"]
        assert variables["queue_batch_size"]["default"] == 100
        assert variables["queue_batch_window_seconds"]["default"] == 5
        assert variables["queue_maximum_concurrency"]["default"] == 2
        for variable in ("queue_batch_size", "queue_maximum_concurrency"):
            assert variables[variable]["validation"], f"{variable} is validated"
        role_policy = resources["aws_iam_role_policy"][f"{function}_policy"]["policy"]
        assert f"aws_sqs_queue.{function}_intake[*].arn" in role_policy
        assert "sqs:ReceiveMessage" in role_policy and "sqs:DeleteMessage" in role_policy
