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
from cdktn_provider_aws.lambda_event_source_mapping import (
    LambdaEventSourceMapping,
    LambdaEventSourceMappingScalingConfig,
)
from cdktn_provider_aws.lambda_function import LambdaFunction
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.sqs_queue import SqsQueue

from bundle.inputs import (
    CIDR,
    Input,
    Rule,
    integer_between,
    number_between,
    one_of,
    regex,
    sentinel_or_integer_between,
)
from bundle.module import REPORTING_INPUTS, ModuleStack, event_pattern_expression, ref, splat
from functions.common import events, finding_catalog, queue
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


# Conflict retries (WAF LockToken, NACL rule numbers) back off for up to ~9 s; a batch of
# findings writes its rows in the same invocation.
BLOCKER_TIMEOUT_SECONDS = 120
# AWS: a queue's visibility timeout at least six times the function's timeout (plus the
# batch window), so a batch Lambda retries after a throttle is not visible twice at once.
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
VISIBILITY_TIMEOUTS_PER_FUNCTION_TIMEOUT = 6
# Receives before a message moves to the remediator's dead-letter queue; AWS advises at
# least 5 so throttled batches are not dead-lettered.
MAX_RECEIVE_COUNT = 5
INTAKE_RETENTION_SECONDS = 4 * 24 * 3600


# The event source mapping polls the queue with the remediator's role.
QUEUE_PERMISSIONS = queue.QUEUE_PERMISSIONS


def _whole_number(name: str, description: str, default: int, low: int, high: int) -> Input:
    return Input(name, "number", description, default=default, rules=(integer_between(low, high),))


def queue_inputs() -> tuple[Input, ...]:
    """How the blocker's queue hands findings to it (the event source mapping)."""
    scaling = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html"
    return (
        _whole_number(
            "queue_batch_size",
            "Most findings the remediator receives from its queue in one invocation (1 to "
            "1000); it applies them to its enforcement point in one read-modify-write. "
            f"Above 10, queue_batch_window_seconds must be at least 1. See {scaling}.",
            queue.DEFAULT_BATCH_SIZE,
            1,
            1000,
        ),
        _whole_number(
            "queue_batch_window_seconds",
            "Seconds the queue gathers findings before invoking the remediator with them "
            "(0 to 300): during a burst, a few seconds of delay turn hundreds of writes into "
            "a few. See https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html.",
            queue.DEFAULT_BATCH_WINDOW_SECONDS,
            0,
            300,
        ),
        _whole_number(
            "queue_maximum_concurrency",
            "Most concurrent invocations the queue starts (2, the least SQS event sources "
            "allow, to 1000). Writers of one enforcement point contend (WAF LockToken, one "
            "NACL writer at a time), so more adds conflicts rather than throughput. With "
            "reserved_concurrency set, it must stay below it: the sweep and operators need "
            "the rest, and a queue throttled by its own function returns batches to the "
            f"queue. See {scaling}.",
            queue.DEFAULT_MAXIMUM_CONCURRENCY,
            2,
            1000,
        ),
    )


QUEUE_CHECKS = (
    {
        "condition": "${var.queue_batch_size <= 10 || var.queue_batch_window_seconds >= 1}",
        "error_message": "queue_batch_size above 10 needs queue_batch_window_seconds of at "
        "least 1 (an SQS event source rule).",
    },
    {
        "condition": "${var.reserved_concurrency == -1 || "
        "var.reserved_concurrency > var.queue_maximum_concurrency}",
        "error_message": "reserved_concurrency must exceed queue_maximum_concurrency (or be "
        "-1): the queue would otherwise be throttled by its own function, and the sweep "
        "would have no room.",
    },
)


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
        *queue_inputs(),
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
    hyphenated = name.replace("_", "-")
    intake_name = f"${{var.name_prefix}}-{hyphenated}-intake"
    function = stack.remediator(
        count_expression=f"{enabled} ? 1 : 0",
        kms_key_arn=key_arn,
        resources={
            **resources,
            "state_table": splat(table, "arn"),
            "notify_topic": optional_arn.format("var.notify_topic_arn"),
            "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
            # The queue is created below; its address is fixed by its construct id.
            "intake_queue": f"aws_sqs_queue.{name}_intake[*].arn",
            "intake_queue_key": f"[{key_arn.removeprefix('${').removesuffix('}')}]",
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
        timeout=BLOCKER_TIMEOUT_SECONDS,
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
    rules = {}
    for trigger, (description, source, _payload, rule_count) in triggers.items():
        rules[trigger] = CloudwatchEventRule(
            stack,
            f"{name}_{trigger}",
            count=rule_count,
            name=f"${{var.name_prefix}}-{hyphenated}-{trigger.replace('_', '-')}",
            description=description,
            tags=stack.tags(),
            **source,
        )
    intake = _intake_queue(stack, name, intake_name, key_arn, count, rules)
    for trigger, (_description, _source, payload, rule_count) in triggers.items():
        # Findings and Block IP actions wait in the queue to be applied in batches; the
        # sweep stays a direct invocation (one at a time, never behind a burst).
        queued = payload is None
        stack.event_target(
            f"{name}_{trigger}_target",
            rule=rules[trigger],
            arn=stack.expr(ref(intake if queued else function, "arn")),
            target_id=hyphenated,
            count=rule_count,
            payload=payload,
        )
        if queued:
            continue
        LambdaPermission(
            stack,
            f"{name}_{trigger}_invoke",
            count=rule_count,
            statement_id=f"AllowEventBridge-{trigger.replace('_', '-')}",
            action="lambda:InvokeFunction",
            function_name=stack.expr(ref(function, "function_name")),
            principal="events.amazonaws.com",
            source_arn=stack.expr(ref(rules[trigger], "arn")),
        )
    mapping = LambdaEventSourceMapping(
        stack,
        f"{name}_intake_mapping",
        count=count,
        event_source_arn=stack.expr(ref(intake, "arn")),
        function_name=stack.expr(ref(function, "arn")),
        batch_size=Token.as_number("${var.queue_batch_size}"),
        maximum_batching_window_in_seconds=Token.as_number("${var.queue_batch_window_seconds}"),
        function_response_types=["ReportBatchItemFailures"],
        scaling_config=LambdaEventSourceMappingScalingConfig(
            maximum_concurrency=Token.as_number("${var.queue_maximum_concurrency}")
        ),
        tags=stack.tags(),
    )
    # Lambda checks at creation that the role may read the queue.
    mapping.add_override("depends_on", [f"aws_iam_role_policy.{name}_policy"])
    mapping.add_override("lifecycle.precondition", list(QUEUE_CHECKS))
    return function


def _intake_queue(
    stack: ModuleStack,
    name: str,
    queue_name: str,
    key_arn: str,
    count: float,
    rules: Mapping[str, CloudwatchEventRule],
) -> SqsQueue:
    """The queue in front of the remediator: encrypted with the module's key, open to the
    module's finding and Block IP rules only, failing over to the remediator's DLQ."""
    sources = ", ".join(splat(rules[t], "arn") for t in ("findings", "block_ip"))
    arn = queue_name.join(
        (f"arn:{stack.arn_partition}:sqs:{stack.region_name}:{stack.account_id}:", "")
    )
    # Inline policy, as the module's event dead-letter queue has (one settle wait, not two).
    return SqsQueue(
        stack,
        f"{name}_intake",
        count=count,
        name=queue_name,
        kms_master_key_id=key_arn,
        kms_data_key_reuse_period_seconds=300,
        message_retention_seconds=INTAKE_RETENTION_SECONDS,
        visibility_timeout_seconds=Token.as_number(
            f"${{{VISIBILITY_TIMEOUTS_PER_FUNCTION_TIMEOUT} * {BLOCKER_TIMEOUT_SECONDS}"
            " + var.queue_batch_window_seconds}"
        ),
        redrive_policy=stack.expr(
            f"jsonencode({{deadLetterTargetArn = aws_sqs_queue.{name}_dlq[0].arn, "
            f"maxReceiveCount = {MAX_RECEIVE_COUNT}}})"
        ),
        policy=stack.expr(
            'jsonencode({Version = "2012-10-17", Statement = [{Sid = '
            '"FindingRulesOfThisModule", Effect = "Allow", '
            'Principal = {Service = "events.amazonaws.com"}, Action = "sqs:SendMessage", '
            f'Resource = "{arn}", '
            f'Condition = {{ArnEquals = {{"aws:SourceArn" = concat({sources})}}}}}}]}})'
        ),
        tags=stack.tags(),
    )
