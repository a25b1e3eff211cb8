"""What the two address-blocking modules (waf_shield, nacl_blocklist) share: the inputs
that govern a block, and the remediator's wiring (state table, function, the finding
and sweep triggers). Both remediators read the same finding catalog and address rules
from functions/common, so the same GuardDuty finding blocks the same addresses at the
edge and at the subnet."""

from __future__ import annotations

from collections.abc import Mapping

from cdktn import Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktn_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
    DynamodbTableTtl,
)
from cdktn_provider_aws.lambda_function import LambdaFunction
from cdktn_provider_aws.lambda_permission import LambdaPermission

from bundle.inputs import ARN, CIDR, Input, Rule, integer_between, number_between, regex
from bundle.module import ModuleStack, event_pattern_expression, ref, splat
from functions.common import finding_catalog

OPTIONAL_ARN = Rule('{v} == "" || ' + ARN.condition, ARN.message, lambda v: v == "" or ARN.check(v))


def blocking_inputs(allowlist_effect: str) -> tuple[Input, ...]:
    return (
        Input(
            "allowlist_cidrs",
            "list(string)",
            f"Addresses never blocked: {allowlist_effect}. IPv4 and IPv6 CIDRs. Private, "
            "loopback, link-local and other non-global addresses are never blocked anyway.",
            default=[],
            each=(CIDR,),
        ),
        Input(
            "create_remediator",
            "bool",
            "Whether to create the remediator Lambda, its state table and its EventBridge rules.",
            default=True,
        ),
        Input(
            "block_ttl_seconds",
            "number",
            "How long a blocked address stays blocked (60 s to 7 days); a new finding about "
            "it extends the block.",
            default=3600,
            rules=(integer_between(60, 604800),),
        ),
        Input(
            "severity_threshold",
            "number",
            "GuardDuty severity at or above which a finding leads to a block (0-8.9; "
            "GuardDuty rates 4.0-6.9 Medium, 7.0-8.9 High).",
            default=4,
            rules=(number_between(0, 8.9),),
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
            "notify_topic_arn",
            "string",
            "SNS topic the remediator reports to (the notifications module's "
            '`topic_arns["high"]`). Empty sends no reports.',
            default="",
            rules=(OPTIONAL_ARN,),
        ),
        Input(
            "notify_kms_key_arn",
            "string",
            "KMS key of that topic (the notifications module's `kms_key_arn`), which the "
            "remediator needs to publish to it. Empty when the topic is not encrypted.",
            default="",
            rules=(OPTIONAL_ARN,),
        ),
    )


def blocking_remediator(
    stack: ModuleStack,
    key_arn: str,
    resources: Mapping[str, str],
    environment: Mapping[str, str],
) -> LambdaFunction:
    """The remediator with its state table and its two triggers: GuardDuty findings of the
    shared catalog at or above the threshold, and the sweep schedule."""
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
            "BLOCK_TTL_SECONDS": "${var.block_ttl_seconds}",
            "SEVERITY_THRESHOLD": "${var.severity_threshold}",
            "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
            **environment,
        },
        # Conflict retries (WAF LockToken, NACL rule numbers) back off for up to ~9 s.
        timeout=120,
    )
    pattern = event_pattern_expression(finding_catalog.event_pattern(0.0), "var.severity_threshold")
    triggers = {
        "findings": (
            "GuardDuty findings that carry attacker addresses (functions/common/finding_catalog.py)",
            {"event_pattern": stack.expr(pattern)},
            None,
        ),
        "sweep": (
            "Expire blocks and reconcile them with the state table",
            {"schedule_expression": "${var.sweep_schedule}"},
            '{"action": "sweep"}',
        ),
    }
    hyphenated = name.replace("_", "-")
    for trigger, (description, source, payload) in triggers.items():
        rule = CloudwatchEventRule(
            stack,
            f"{name}_{trigger}",
            count=count,
            name=f"${{var.name_prefix}}-{hyphenated}-{trigger}",
            description=description,
            tags=stack.tags(),
            **source,
        )
        target = CloudwatchEventTarget(
            stack,
            f"{name}_{trigger}_target",
            count=count,
            rule=stack.expr(ref(rule, "name")),
            target_id=hyphenated,
            arn=stack.expr(ref(function, "arn")),
        )
        if payload:
            target.add_override("input", payload)
        LambdaPermission(
            stack,
            f"{name}_{trigger}_invoke",
            count=count,
            statement_id=f"AllowEventBridge-{trigger}",
            action="lambda:InvokeFunction",
            function_name=stack.expr(ref(function, "function_name")),
            principal="events.amazonaws.com",
            source_arn=stack.expr(ref(rule, "arn")),
        )
    return function
