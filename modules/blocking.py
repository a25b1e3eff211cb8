"""What the two address-blocking modules (waf_shield, nacl_blocklist) share: the inputs
that govern a block, and the remediator's wiring (state table, function, the finding
and sweep triggers). Both remediators read the same finding catalog and address rules
from functions/common, so the same GuardDuty finding blocks the same addresses at the
edge and at the subnet."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdktn import Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
    DynamodbTableTtl,
)
from cdktn_provider_aws.lambda_function import LambdaFunction
from cdktn_provider_aws.lambda_permission import LambdaPermission

from bundle.inputs import (
    CIDR,
    Input,
    Rule,
    number_between,
    one_of,
    regex,
    sentinel_or_integer_between,
)
from bundle.module import REPORTING_INPUTS, ModuleStack, event_pattern_expression, ref, splat
from functions.common import events, finding_catalog
from functions.common.blocking import (
    DEFAULT_SEVERITY_THRESHOLD,
    PUBLISHING_FREQUENCIES,
    TTL_PER_PUBLISHING_INTERVAL,
)

# The allowlist travels to the remediator in one environment variable; Lambda allows
# 4 KB of them in all, and the rest of the function's variables need about 1 KB.
ALLOWLIST_JSON_LIMIT = 3000
ALLOWLIST_FITS = Rule(
    condition=f"length(jsonencode({{v}})) <= {ALLOWLIST_JSON_LIMIT}",
    message=f"The allowlist must fit in {ALLOWLIST_JSON_LIMIT} characters of JSON (Lambda "
    "allows 4 KB of environment variables): merge neighbouring ranges into wider CIDRs.",
    check=lambda value: len(json.dumps(value, separators=(",", ":"))) <= ALLOWLIST_JSON_LIMIT,
)


BLOCK_IP_ACTION = regex(
    r"^$|^arn:aws[a-z-]*:securityhub:[a-z0-9-]+:[0-9]{12}:action/custom/[A-Za-z0-9]{1,20}$",
    "Must be empty or a Security Hub custom action ARN, such as "
    "arn:aws:securityhub:us-east-1:111122223333:action/custom/BlockIP.",
)


def block_ip_pattern() -> dict[str, Any]:
    """The Security Hub custom action events of the Block IP action (ARN as a placeholder)."""
    return {
        "source": ["aws.securityhub"],
        "detail-type": [events.SECURITY_HUB_CUSTOM_ACTION],
        "resources": ["__BLOCK_IP_ACTION_ARN__"],
    }


def blocking_inputs(allowlist_effect: str) -> tuple[Input, ...]:
    return (
        Input(
            "allowlist_cidrs",
            "list(string)",
            f"Addresses never blocked: {allowlist_effect}. IPv4 and IPv6 CIDRs. Private, "
            "loopback, link-local and other non-global addresses are never blocked anyway.",
            default=[],
            each=(CIDR,),
            rules=(ALLOWLIST_FITS,),
        ),
        Input(
            "create_remediator",
            "bool",
            "Whether to create the remediator Lambda, its state table and its EventBridge rules.",
            default=True,
        ),
        Input(
            "guardduty_finding_publishing_frequency",
            "string",
            "The finding publishing frequency of this account's GuardDuty detector "
            "(FIFTEEN_MINUTES, ONE_HOUR or SIX_HOURS, GuardDuty's default): how often "
            "GuardDuty re-publishes an ongoing finding, each time extending its blocks. It "
            "sets the default block_ttl_seconds. See "
            "https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings_cloudwatch.html.",
            default="SIX_HOURS",
            rules=(one_of(tuple(PUBLISHING_FREQUENCIES)),),
        ),
        Input(
            "block_ttl_seconds",
            "number",
            "How long a blocked address stays blocked (60 s to 7 days); each update of the "
            "finding extends it. 0 (the default) means twice "
            "guardduty_finding_publishing_frequency (12 hours for SIX_HOURS), so a block "
            "outlives the interval at which GuardDuty reports an attacker that is still "
            "active, with one update to spare. A shorter TTL unblocks an active attacker "
            "between updates.",
            default=0,
            rules=(sentinel_or_integer_between(0, 60, 604800, "derived from the frequency"),),
        ),
        Input(
            "severity_threshold",
            "number",
            "GuardDuty severity at or above which a finding of the catalog leads to a block "
            "(0-10). The default 1 acts on every catalog finding: GuardDuty rates inbound "
            "brute force and port probes Low (1.0-3.9), and the catalog, not the severity, "
            "decides who is an attacker. See "
            "https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings-severity.html.",
            default=DEFAULT_SEVERITY_THRESHOLD,
            rules=(number_between(0, 10),),
        ),
        Input(
            "sweep_schedule",
            "string",
            "EventBridge schedule of the sweep that expires blocks and reconciles what is "
            "blocked with the state table, both ways.",
            default="rate(5 minutes)",
            rules=(
                regex(
                    r"^(rate|cron)\(.+\)$", "Must be an EventBridge rate() or cron() expression."
                ),
            ),
        ),
        Input(
            "block_ip_action_arn",
            "string",
            'ARN of the Security Hub custom action "Block IP" (the incident_response '
            "module's output). When set, an EventBridge rule sends its \"Security Hub "
            'Findings - Custom Action" events to the remediator, which blocks the addresses '
            "of every finding in them with the same catalog, roles and rules as GuardDuty "
            "findings. Empty (the default): no rule. See "
            "https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-cwe-custom-actions.html.",
            default="",
            rules=(BLOCK_IP_ACTION,),
        ),
        *REPORTING_INPUTS,
    )


def block_ttl_expression() -> str:
    """The block TTL Terraform passes to the remediator: the variable, or its default
    derived from the publishing frequency."""
    frequencies = json.dumps(PUBLISHING_FREQUENCIES, sort_keys=True)
    return (
        "var.block_ttl_seconds != 0 ? var.block_ttl_seconds : "
        f"{TTL_PER_PUBLISHING_INTERVAL} * {frequencies}[var.guardduty_finding_publishing_frequency]"
    )


def blocking_remediator(
    stack: ModuleStack,
    key_arn: str,
    resources: Mapping[str, str],
    environment: Mapping[str, str],
    roles: Iterable[finding_catalog.Role],
    preconditions: Sequence[Mapping[str, str]] = (),
) -> LambdaFunction:
    """The remediator with its state table and its triggers: GuardDuty findings of the
    shared catalog whose remote party has one of ``roles`` (what this point answers), at or
    above the threshold; the sweep schedule; and, when ``block_ip_action_arn`` is set, the
    Security Hub Block IP action."""
    assert stack.function is not None
    name = stack.function
    enabled = "var.create && var.create_remediator"
    count = Token.as_number(f"${{{enabled} ? 1 : 0}}")
    table = DynamodbTable(
        stack,
        "state",
        count=count,
        name=f"${{var.name_prefix}}-{name.split('_')[0]}-blocks",
        billing_mode="PAY_PER_REQUEST",
        hash_key="pk",
        attribute=[DynamodbTableAttribute(name="pk", type="S")],
        # DynamoDB deletes expired rows lazily; the sweeper never waits for it.
        ttl=DynamodbTableTtl(attribute_name="expires_at", enabled=True),
        point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
        server_side_encryption=DynamodbTableServerSideEncryption(enabled=True, kms_key_arn=key_arn),
        tags=stack.tags(),
    )
    optional_arn = '{0} == "" ? [] : [{0}]'
    function = stack.remediator(
        count_expression=f"{enabled} ? 1 : 0",
        kms_key_arn=key_arn,
        resources={
            **resources,
            "state_table": splat(table, "arn"),
            "notify_topic": optional_arn.format("var.notify_topic_arn"),
            "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
        },
        environment={
            "STATE_TABLE": stack.expr(ref(table, "name")),
            "ALLOWLIST_CIDRS": "${jsonencode(var.allowlist_cidrs)}",
            "BLOCK_TTL_SECONDS": stack.expr(block_ttl_expression()),
            "SEVERITY_THRESHOLD": "${var.severity_threshold}",
            "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
            "BLOCK_IP_ACTION_ARN": "${var.block_ip_action_arn}",
            **environment,
        },
        # Conflict retries (WAF LockToken, NACL rule numbers) back off for up to ~9 s.
        timeout=120,
        preconditions=preconditions,
    )
    pattern = event_pattern_expression(
        finding_catalog.event_pattern(0.0, roles), "var.severity_threshold"
    )
    block_ip = json.dumps(block_ip_pattern(), separators=(",", ":")).replace(
        '"__BLOCK_IP_ACTION_ARN__"', '"${var.block_ip_action_arn}"'
    )
    action_enabled = f'{enabled} && var.block_ip_action_arn != ""'
    triggers = {
        "findings": (
            "GuardDuty findings that carry addresses this point answers "
            "(functions/common/finding_catalog.py)",
            {"event_pattern": stack.expr(pattern)},
            None,
            count,
        ),
        "sweep": (
            "Expire blocks and reconcile them with the state table",
            {"schedule_expression": "${var.sweep_schedule}"},
            '{"action": "sweep"}',
            count,
        ),
        "block_ip": (
            "Security Hub custom action Block IP: block the addresses of the chosen findings",
            {"event_pattern": block_ip},
            None,
            Token.as_number(f"${{{action_enabled} ? 1 : 0}}"),
        ),
    }
    hyphenated = name.replace("_", "-")
    for trigger, (description, source, payload, rule_count) in triggers.items():
        rule = CloudwatchEventRule(
            stack,
            f"{name}_{trigger}",
            count=rule_count,
            name=f"${{var.name_prefix}}-{hyphenated}-{trigger.replace('_', '-')}",
            description=description,
            tags=stack.tags(),
            **source,
        )
        stack.event_target(
            f"{name}_{trigger}_target",
            rule=rule,
            arn=stack.expr(ref(function, "arn")),
            target_id=hyphenated,
            count=rule_count,
            payload=payload,
        )
        LambdaPermission(
            stack,
            f"{name}_{trigger}_invoke",
            count=rule_count,
            statement_id=f"AllowEventBridge-{trigger.replace('_', '-')}",
            action="lambda:InvokeFunction",
            function_name=stack.expr(ref(function, "function_name")),
            principal="events.amazonaws.com",
            source_arn=stack.expr(ref(rule, "arn")),
        )
    return function
