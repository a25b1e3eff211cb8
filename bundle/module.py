"""The base of every security module: a CDK Terrain stack that becomes a standalone
Terraform module.

Everything is declared on the stack itself (never in nested constructs, whose ids get
hash suffixes), so Terraform addresses are exactly the construct ids chosen here. Those
ids are part of the public contract: changing one destroys and recreates
infrastructure in every account that uses the module.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bundle import nodejs

nodejs.ensure_supported_node()

from cdktn import (  # noqa: E402  (cdktn starts jsii, which needs the right Node first)
    TerraformElement,
    TerraformLocal,
    TerraformOutput,
    TerraformStack,
    TerraformVariable,
    TerraformVariableValidationConfig,
    Token,
)
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule  # noqa: E402
from cdktn_provider_aws.cloudwatch_event_target import (  # noqa: E402
    CloudwatchEventTarget,
    CloudwatchEventTargetDeadLetterConfig,
    CloudwatchEventTargetRetryPolicy,
)
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup  # noqa: E402
from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm  # noqa: E402
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity  # noqa: E402
from cdktn_provider_aws.data_aws_partition import DataAwsPartition  # noqa: E402
from cdktn_provider_aws.data_aws_region import DataAwsRegion  # noqa: E402
from cdktn_provider_aws.iam_role import IamRole  # noqa: E402
from cdktn_provider_aws.iam_role_policy import IamRolePolicy  # noqa: E402
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment  # noqa: E402
from cdktn_provider_aws.kms_alias import KmsAlias  # noqa: E402
from cdktn_provider_aws.kms_key import KmsKey  # noqa: E402
from cdktn_provider_aws.lambda_function import (  # noqa: E402
    LambdaFunction,
    LambdaFunctionDeadLetterConfig,
    LambdaFunctionEnvironment,
    LambdaFunctionTracingConfig,
)
from cdktn_provider_aws.provider import AwsProvider  # noqa: E402
from cdktn_provider_aws.s3_bucket_ownership_controls import (  # noqa: E402
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy  # noqa: E402
from cdktn_provider_aws.s3_bucket_public_access_block import (  # noqa: E402
    S3BucketPublicAccessBlock,
)
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (  # noqa: E402
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktn_provider_aws.sqs_queue import SqsQueue  # noqa: E402
from constructs import Construct  # noqa: E402

from bundle.inputs import (  # noqa: E402
    ARN,
    COMMON_INPUTS,
    LOG_RETENTION_DAYS,
    Input,
    Rule,
    integer_in,
    regex,
    sentinel_or_integer_between,
)
from functions.common import report  # noqa: E402
from functions.common.permissions import Permission  # noqa: E402

MANAGED_BY = "playbook-as-code"
LAMBDA_RUNTIME = "python3.12"
# Powertools is attached as AWS's published layer so function zips stay small.
POWERTOOLS_LAYER = (
    "arn:${data.aws_partition.partition.partition}:lambda:${data.aws_region.region.id}"
    ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:27"
)

# Lambda refuses a function whose environment variables (names and values) exceed 4 KB.
LAMBDA_ENVIRONMENT_LIMIT = 4096
# IAM role names are at most 64 characters.
IAM_ROLE_NAME_LIMIT = 64
# EventBridge keeps retrying a target for up to 24 hours and 185 attempts (its maxima);
# what still fails lands in the module's event dead-letter queue, which raises an alarm.
EVENT_RETRY_SECONDS = 86400
EVENT_RETRY_ATTEMPTS = 185

OPTIONAL_ARN = Rule('{v} == "" || ' + ARN.condition, ARN.message, lambda v: v == "" or ARN.check(v))

FUNCTION_INPUTS = (
    Input(
        "log_retention_days",
        "number",
        "Days to keep the remediator's CloudWatch logs. One of the periods CloudWatch "
        "Logs accepts; 365 or more keeps a year of incident history.",
        default=365,
        rules=(integer_in(LOG_RETENTION_DAYS, "a CloudWatch Logs retention period"),),
    ),
    Input(
        "reserved_concurrency",
        "number",
        "Reserved concurrent executions for the remediator: a ceiling that keeps a finding "
        "storm from exhausting the account's Lambda concurrency. -1 (the default, as in the "
        "AWS provider) reserves none, because accounts whose concurrency quota is 10 (new "
        "accounts) cannot reserve any: Lambda keeps 10 unreserved. See "
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html.",
        default=-1,
        rules=(sentinel_or_integer_between(-1, 1, 1000, "no reservation"),),
    ),
    Input(
        "powertools_layer_arn",
        "string",
        "ARN of the Powertools for AWS Lambda (Python) v3 layer. Empty uses AWS's published "
        "layer in the current region (version 27, python3.12, x86_64); see "
        "https://docs.powertools.aws.dev/lambda/python/latest/#lambda-layer.",
        default="",
        rules=(
            regex(
                r"^$|^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$",
                "Must be empty or a Lambda layer version ARN.",
            ),
        ),
    ),
    Input(
        "iam_role_path",
        "string",
        "Path of every IAM role the module creates, for landing zones whose SCPs or "
        "permission sets match roles by path. See "
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-friendly-names.",
        default="/",
        rules=(
            regex(
                r"^/([A-Za-z0-9+=,.@_-]+/)*$",
                "Must be / or a path such as /security/playbook/ (letters, digits, +=,.@_- "
                "between slashes).",
            ),
        ),
    ),
    Input(
        "iam_permissions_boundary_arn",
        "string",
        "ARN of the managed policy set as the permissions boundary of every IAM role the "
        "module creates, as landing zones often require. Empty sets none. See "
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html.",
        default="",
        rules=(
            regex(
                r"^$|^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$",
                "Must be empty or an IAM policy ARN such as "
                "arn:aws:iam::111122223333:policy/PlaybookBoundary.",
            ),
        ),
    ),
)

# Where a remediator reports, and where its alarms go. Every module but notifications
# (which owns the topics) takes them.
REPORTING_INPUTS = (
    Input(
        "notify_topic_arn",
        "string",
        "SNS topic the remediator reports to and its CloudWatch alarms (errors, dead-letter "
        'queues) publish to: the notifications module\'s `topic_arns["high"]`. Empty sends '
        "no reports and leaves the alarms without an action.",
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


FUNCTION_LIMITS = (
    "IAM keeps role names per account and allows 64 characters: roles are named "
    "`<name_prefix>-<purpose>-<region>` (the module applies in several regions of one "
    "account) and the length is checked at plan.",
    "Lambda allows 4 KB of environment variables (names and values): the remediator's "
    "environment is checked at plan, the long inputs are validated on their own.",
    "Accounts whose Lambda concurrency quota is 10 (new accounts) cannot reserve any: "
    "`reserved_concurrency` is -1 (none) unless set.",
    "EventBridge retries a target for 24 hours (185 attempts); what it still cannot "
    "deliver lands in the module's events dead-letter queue, and every dead-letter queue "
    "and the remediator's errors raise a CloudWatch alarm on the notifications topic.",
)


@dataclass(frozen=True)
class Output:
    name: str
    description: str


def ref(element: TerraformElement, attribute: str, index: str = "0") -> str:
    """``type.name[index].attribute`` for a resource guarded by ``count``."""
    address = f"{element.terraform_resource_type}.{element.friendly_unique_id}"  # type: ignore[attr-defined]
    return f"{address}[{index}].{attribute}"


def splat(element: TerraformElement, attribute: str) -> str:
    """``type.name[*].attribute``: an empty list when the resource is not created."""
    address = f"{element.terraform_resource_type}.{element.friendly_unique_id}"  # type: ignore[attr-defined]
    return f"{address}[*].{attribute}"


class ModuleStack(TerraformStack):
    """One security module. Subclasses set the class attributes and build resources."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]  # a paragraph for the README
    inputs: ClassVar[tuple[Input, ...]]  # module-specific inputs (common ones are added)
    outputs: ClassVar[tuple[Output, ...]]
    function: ClassVar[str | None] = None  # the paired remediator under functions/
    # Further Lambdas of the module (functions/<name>/), packaged beside function.zip as
    # <name>.zip and wired with remediator(lambda_name=<name>).
    extra_functions: ClassVar[tuple[str, ...]] = ()
    # Permissions the Lambda service uses with the function's role on the module's behalf
    # (an SQS event source mapping polls with it): part of its policy, though the code
    # never calls them, so they are not in the function's permissions.py.
    service_permissions: ClassVar[tuple[Permission, ...]] = ()
    # Limits AWS enforces that the module checks (README "Limits"); every module with a
    # remediator has FUNCTION_LIMITS too.
    limits: ClassVar[tuple[str, ...]] = ()

    def __init__(self, scope: Construct) -> None:
        super().__init__(scope, self.name)
        # cdktn insists on a provider for its resources; it is removed from the module
        # at synthesis because a reusable module must inherit its caller's provider.
        AwsProvider(self, "aws")
        self.variables: dict[str, TerraformVariable] = {}
        self.key_arn = ""  # set by module_key()
        self._events_dlq: SqsQueue | None = None
        for item in self.all_inputs():
            self._declare(item)
        TerraformLocal(
            self,
            "module_tags",
            "${merge(var.tags, "
            + json.dumps({"ManagedBy": MANAGED_BY, "Module": self.name}, sort_keys=True)
            + ")}",
        )
        self.caller = DataAwsCallerIdentity(self, "current")
        self.partition = DataAwsPartition(self, "partition")
        self.region = DataAwsRegion(self, "region")
        self.build()
        self._declared_outputs = {o.name for o in self.outputs}

    @classmethod
    def readme_sections(cls) -> list[str]:
        """Extra Markdown lines for the module README (after the remediator's permissions)."""
        return []

    @classmethod
    def all_inputs(cls) -> tuple[Input, ...]:
        extra = FUNCTION_INPUTS if cls.function else ()
        return (*COMMON_INPUTS, *cls.inputs, *extra)

    def build(self) -> None:
        raise NotImplementedError

    def _declare(self, item: Input) -> None:
        block = item.variable()
        self.variables[item.name] = TerraformVariable(
            self,
            item.name,
            type=block["type"],
            description=block["description"],
            default=block.get("default"),
            nullable=block.get("nullable"),
            validation=[
                TerraformVariableValidationConfig(
                    condition=v["condition"], error_message=v["error_message"]
                )
                for v in block["validation"]
            ]
            if "validation" in block
            else None,
        )

    # Expressions -------------------------------------------------------------------
    @property
    def count(self) -> float:
        return Token.as_number("${var.create ? 1 : 0}")

    @staticmethod
    def expr(expression: str) -> str:
        return "${" + expression + "}"

    def tags(self, **extra: str) -> Mapping[str, str]:
        if not extra:
            return Token.as_string_map("${local.module_tags}")
        return Token.as_string_map(
            "${merge(local.module_tags, " + json.dumps(extra, sort_keys=True) + ")}"
        )

    @property
    def account_id(self) -> str:
        return "${data.aws_caller_identity.current.account_id}"

    @property
    def region_name(self) -> str:
        return "${data.aws_region.region.id}"

    @property
    def arn_partition(self) -> str:
        return "${data.aws_partition.partition.partition}"

    def global_name(self, purpose: str) -> str:
        """``<name_prefix>-<purpose>-<region>``: a name AWS keeps per account, not per region
        (IAM roles, Shield protection groups). The region in it lets one account apply the
        module in several regions with the same ``name_prefix``."""
        return f"${{var.name_prefix}}-{purpose}-{self.region_name}"

    def module_key(
        self, description: str, deletion_window_days: float, service_users: Sequence[str] = ()
    ) -> KmsKey:
        """The module's customer-managed KMS key (rotation on) and its alias
        ``alias/<name_prefix>-<module>``; see :func:`key_policy` for who may use it.
        EventBridge always may: it encrypts what it puts on the module's event
        dead-letter queue with this key."""
        users = tuple(dict.fromkeys(("events.amazonaws.com", *service_users)))
        key = KmsKey(
            self,
            "this",
            count=self.count,
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=deletion_window_days,
            policy=self.expr(f"jsonencode({key_policy(self, users)})"),
            tags=self.tags(),
        )
        KmsAlias(
            self,
            "this_alias",
            count=self.count,
            name=f"alias/${{var.name_prefix}}-{self.name.replace('_', '-')}",
            target_key_id=self.expr(ref(key, "key_id")),
        )
        self.key_arn = self.expr(ref(key, "arn"))
        return key

    def output(self, name: str, expression: str) -> None:
        described = {o.name: o.description for o in self.outputs}
        if name not in described:
            raise ValueError(f"{self.name}: output {name} is not declared in outputs")
        TerraformOutput(self, name, value=self.expr(expression), description=described[name])

    # IAM, events, alarms --------------------------------------------------------------
    def role(
        self, construct_id: str, *, purpose: str, services: Sequence[str], count: float
    ) -> IamRole:
        """An IAM role that ``services`` assume, named per region (:meth:`global_name`),
        on the module's ``iam_role_path`` and with its ``iam_permissions_boundary_arn``."""
        name = self.global_name(purpose)
        role = IamRole(
            self,
            construct_id,
            count=count,
            name=name,
            path="${var.iam_role_path}",
            permissions_boundary=self.expr(
                'var.iam_permissions_boundary_arn != "" ? var.iam_permissions_boundary_arn : null'
            ),
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {
                                "Service": sorted(services) if len(services) > 1 else services[0]
                            },
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                sort_keys=True,
            ),
            tags=self.tags(),
        )
        role.add_override(
            "lifecycle.precondition",
            [
                {
                    "condition": f'${{length("{name}") <= {IAM_ROLE_NAME_LIMIT}}}',
                    "error_message": f"The IAM role name {name} is longer than IAM's "
                    f"{IAM_ROLE_NAME_LIMIT} characters: choose a shorter name_prefix.",
                }
            ],
        )
        return role

    def alarm_topics(self) -> str:
        """HCL list of the SNS topics the module's alarms notify (its reporting topic)."""
        return '(var.notify_topic_arn == "" ? [] : [var.notify_topic_arn])'

    def alarm(
        self,
        construct_id: str,
        *,
        count: float,
        name: str,
        description: str,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        statistic: str,
    ) -> CloudwatchMetricAlarm:
        """An alarm that fires on any non-zero ``metric`` in five minutes and tells the
        module's topics when it fires and when it clears."""
        topics = Token.as_list(self.expr(self.alarm_topics()))
        return CloudwatchMetricAlarm(
            self,
            construct_id,
            count=count,
            alarm_name=f"${{var.name_prefix}}-{name}",
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dimensions,
            statistic=statistic,
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=topics,
            ok_actions=topics,
            tags=self.tags(),
        )

    def queue_alarm(
        self, construct_id: str, *, queue: SqsQueue, count: float, name: str, description: str
    ) -> CloudwatchMetricAlarm:
        """An alarm on any message waiting in ``queue`` (a dead-letter queue)."""
        return self.alarm(
            construct_id,
            count=count,
            name=name,
            description=description,
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.expr(ref(queue, "name"))},
            statistic="Maximum",
        )

    def private_bucket(self, name: str, bucket_id: str, key_arn: str, count: float) -> None:
        """What every bucket of the modules has: default encryption with the module's KMS
        key (and an S3 bucket key), every public access blocked, ACLs off (the bucket owner
        owns every object). Versioning, lifecycle and policy differ and stay with the module."""
        S3BucketServerSideEncryptionConfigurationA(
            self,
            f"{name}_encryption",
            count=count,
            bucket=bucket_id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms", kms_master_key_id=key_arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
        )
        S3BucketPublicAccessBlock(
            self,
            f"{name}_public_access",
            count=count,
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            f"{name}_ownership",
            count=count,
            bucket=bucket_id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )

    def tls_only_policy(
        self, name: str, bucket: TerraformElement, count: float, *statements: str
    ) -> None:
        """The bucket's policy: every request without TLS denied, then ``statements``
        (HCL object expressions) that the bucket's own users need."""
        arn = ref(bucket, "arn")
        deny = (
            '{Sid = "DenyInsecureTransport", Effect = "Deny", Principal = "*", '
            f'Action = "s3:*", Resource = [{arn}, "${{{arn}}}/*"], '
            'Condition = {Bool = {"aws:SecureTransport" = "false"}}}'
        )
        S3BucketPolicy(
            self,
            f"{name}_policy",
            count=count,
            bucket=self.expr(ref(bucket, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = ['
                + ", ".join([deny, *statements])
                + "]})"
            ),
        )

    def _event_dead_letter_queue(self) -> SqsQueue:
        """The module's one queue for events EventBridge could not deliver (created on
        first use), its policy, and the alarm on its depth."""
        if self._events_dlq is not None:
            return self._events_dlq
        name = f"${{var.name_prefix}}-{self.name.replace('_', '-')}-events-dlq"
        rules = (
            f"arn:{self.arn_partition}:events:{self.region_name}:{self.account_id}"
            ":rule/${var.name_prefix}-*"
        )
        arn = f"arn:{self.arn_partition}:sqs:{self.region_name}:{self.account_id}:{name}"
        # The policy is inline rather than an aws_sqs_queue_policy: the provider waits about
        # 25 s for SQS attributes to settle after each write, and a second resource would
        # wait a second time, after the first.
        queue = SqsQueue(
            self,
            "events_dlq",
            count=self.count,
            name=name,
            kms_master_key_id=self.key_arn,
            message_retention_seconds=1209600,
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [{Sid = '
                '"EventBridgeRulesOfThisModuleDeadLetter", Effect = "Allow", '
                'Principal = {Service = "events.amazonaws.com"}, Action = "sqs:SendMessage", '
                f'Resource = "{arn}", '
                f'Condition = {{ArnLike = {{"aws:SourceArn" = "{rules}"}}}}}}]}})'
            ),
            tags=self.tags(),
        )
        self.queue_alarm(
            "events_dlq_depth",
            queue=queue,
            count=self.count,
            name=f"{self.name.replace('_', '-')}-undelivered-events",
            description=f"EventBridge could not deliver events of the {self.name} module "
            "to their targets after 24 hours of retries; they wait in its events "
            "dead-letter queue.",
        )
        self._events_dlq = queue
        return queue

    def event_target(
        self,
        construct_id: str,
        *,
        rule: CloudwatchEventRule,
        arn: str,
        target_id: str,
        count: float,
        payload: str | None = None,
    ) -> CloudwatchEventTarget:
        """An EventBridge target with an explicit retry policy and the module's event
        dead-letter queue, so an event that cannot be delivered is kept and alarmed on."""
        dlq = self._event_dead_letter_queue()
        target = CloudwatchEventTarget(
            self,
            construct_id,
            count=count,
            rule=self.expr(ref(rule, "name")),
            target_id=target_id,
            arn=arn,
            retry_policy=CloudwatchEventTargetRetryPolicy(
                maximum_event_age_in_seconds=EVENT_RETRY_SECONDS,
                maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
            ),
            dead_letter_config=CloudwatchEventTargetDeadLetterConfig(
                arn=self.expr(ref(dlq, "arn"))
            ),
        )
        if payload is not None:
            target.add_override("input", payload)
        return target

    # Remediator wiring --------------------------------------------------------------
    def remediator(
        self,
        *,
        count_expression: str,
        kms_key_arn: str,
        resources: Mapping[str, str],
        environment: Mapping[str, str],
        timeout: int = 60,
        memory: int = 256,
        preconditions: Sequence[Mapping[str, str]] = (),
        lambda_name: str | None = None,
    ) -> LambdaFunction:
        """The paired Lambda with its role, DLQ, log group, alarms and generated policy.

        ``resources`` maps each symbolic resource name used in the function's declared
        permissions to a Terraform list expression of ARNs. The role policy is built
        from that declaration alone, plus what the Lambda service itself needs (logs,
        DLQ, environment decryption, X-Ray). ``preconditions`` (``condition`` and
        ``error_message``) are checked at plan, beside the environment's size.

        A function that declares putting its reports on the default bus
        (``report.PUT_EVENTS``) gets that bus's ARN and ``REPORT_EVENT_BUS``, so every
        remediator module sends its reports where the notifications module's member rule
        forwards them to the hub.
        """
        name = lambda_name or self.function
        assert name is not None and name in (self.function, *self.extra_functions)
        package = "function.zip" if name == self.function else f"{name}.zip"
        hyphenated = name.replace("_", "-")
        declared = declared_permissions(name)
        if report.PUT_EVENTS in declared:
            bus_arn = (
                f"arn:{self.arn_partition}:events:{self.region_name}:{self.account_id}"
                f":event-bus/{report.DEFAULT_EVENT_BUS}"
            )
            resources = {report.EVENT_BUS_RESOURCE: f'["{bus_arn}"]', **resources}
            environment = {report.EVENT_BUS_VARIABLE: report.DEFAULT_EVENT_BUS, **environment}
        if name == self.function:
            declared += self.service_permissions
        unknown = {p.resource for p in declared} - set(resources)
        if unknown:
            raise ValueError(f"{self.name}: no ARNs given for {sorted(unknown)} of {name}")
        function_name = f"${{var.name_prefix}}-{hyphenated}"
        count = Token.as_number("${" + count_expression + "}")

        log_group = CloudwatchLogGroup(
            self,
            f"{name}_logs",
            count=count,
            name=f"/aws/lambda/{function_name}",
            retention_in_days=Token.as_number("${var.log_retention_days}"),
            kms_key_id=kms_key_arn,
            tags=self.tags(),
        )
        dlq = SqsQueue(
            self,
            f"{name}_dlq",
            count=count,
            name=f"{function_name}-dlq",
            kms_master_key_id=kms_key_arn,
            message_retention_seconds=1209600,
            tags=self.tags(),
        )
        role = self.role(
            f"{name}_role", purpose=hyphenated, services=["lambda.amazonaws.com"], count=count
        )
        statements = _policy_statements(declared, resources)
        statements += [
            _statement(
                "WriteOwnLogs",
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                f'[for arn in {splat(log_group, "arn")} : "${{arn}}:*"]',
            ),
            _statement("SendToOwnDeadLetterQueue", ["sqs:SendMessage"], splat(dlq, "arn")),
            _statement(
                "UseModuleKeyForEnvironmentAndQueue",
                ["kms:Decrypt", "kms:GenerateDataKey"],
                f"[{kms_key_arn.removeprefix('${').removesuffix('}')}]",
            ),
        ]
        IamRolePolicy(
            self,
            f"{name}_policy",
            count=count,
            name="least-privilege",
            role=self.expr(ref(role, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [for s in ['
                + ", ".join(statements)
                + "] : s if length(s.Resource) > 0]})"
            ),
        )
        IamRolePolicyAttachment(
            self,
            f"{name}_xray",
            count=count,
            role=self.expr(ref(role, "name")),
            # X-Ray accepts no resource-level scoping; AWS's managed policy says exactly that.
            policy_arn=f"arn:{self.arn_partition}:iam::aws:policy/AWSXRayDaemonWriteAccess",
        )
        variables = {
            "POWERTOOLS_SERVICE_NAME": name,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **environment,
        }
        local = f"{name}_environment"
        TerraformLocal(self, local, variables)
        function = LambdaFunction(
            self,
            name,
            count=count,
            function_name=function_name,
            description=f"Playbook as Code {self.name} remediator ({name})",
            role=self.expr(ref(role, "arn")),
            runtime=LAMBDA_RUNTIME,
            handler=f"functions.{name}.handler.lambda_handler",
            filename=f"${{path.module}}/{package}",
            source_code_hash=f'${{filebase64sha256("${{path.module}}/{package}")}}',
            timeout=timeout,
            memory_size=memory,
            reserved_concurrent_executions=Token.as_number("${var.reserved_concurrency}"),
            kms_key_arn=kms_key_arn,
            layers=[
                '${var.powertools_layer_arn != "" ? var.powertools_layer_arn : '
                + _hcl_template(POWERTOOLS_LAYER)
                + "}"
            ],
            tracing_config=LambdaFunctionTracingConfig(mode="Active"),
            dead_letter_config=LambdaFunctionDeadLetterConfig(
                target_arn=self.expr(ref(dlq, "arn"))
            ),
            environment=LambdaFunctionEnvironment(
                variables=Token.as_string_map(f"${{local.{local}}}")
            ),
            tags=self.tags(),
            depends_on=[log_group],
        )
        function.add_override(
            "lifecycle.precondition",
            [
                {
                    "condition": f"${{sum(concat([0], [for k, v in local.{local} : "
                    f"length(k) + length(tostring(v))])) <= {LAMBDA_ENVIRONMENT_LIMIT}}}",
                    "error_message": f"The {name} environment variables exceed Lambda's 4 KB "
                    "(names and values together): shorten the longest inputs "
                    "(allowlist_cidrs, for example).",
                },
                *preconditions,
            ],
        )
        self.alarm(
            f"{name}_errors",
            count=count,
            name=f"{hyphenated}-errors",
            description=f"The {name} remediator failed (an error, a timeout or a throttle "
            "that Lambda counted as an error); see its log group.",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions={"FunctionName": self.expr(ref(function, "function_name"))},
            statistic="Sum",
        )
        self.queue_alarm(
            f"{name}_dlq_depth",
            queue=dlq,
            count=count,
            name=f"{hyphenated}-failed-events",
            description=f"Events the {name} remediator failed on after Lambda's retries "
            "wait in its dead-letter queue.",
        )
        return function


def _hcl_template(text: str) -> str:
    """A quoted HCL template string (interpolations kept) for use inside ``${...}``."""
    return '"' + text.replace('"', '\\"') + '"'


def declared_permissions(function: str) -> tuple[Permission, ...]:
    module = importlib.import_module(f"functions.{function}.permissions")
    permissions: tuple[Permission, ...] = module.PERMISSIONS
    return permissions


def _statement(sid: str, actions: Sequence[str], resources: str) -> str:
    listed = ", ".join(f'"{a}"' for a in sorted(actions))
    return f'{{Sid = "{sid}", Effect = "Allow", Action = [{listed}], Resource = {resources}}}'


def _policy_statements(declared: Sequence[Permission], resources: Mapping[str, str]) -> list[str]:
    by_resource: dict[str, set[str]] = {}
    for permission in declared:
        by_resource.setdefault(permission.resource, set()).add(permission.action)
    return [
        _statement(
            "Declared" + "".join(part.capitalize() for part in key.split("_")),
            sorted(actions),
            resources[key],
        )
        for key, actions in sorted(by_resource.items())
    ]


def event_pattern_expression(pattern: Mapping[str, object], numeric: str) -> str:
    """``jsonencode(...)`` of an EventBridge pattern whose numeric comparisons take their
    value from the Terraform expression ``numeric`` (e.g. a severity threshold variable).
    HCL object syntax accepts JSON, so the pattern is spliced in as text."""

    def splice(node: object) -> object:
        if isinstance(node, dict):
            if set(node) == {"numeric"}:
                operator = node["numeric"][0]
                return {"numeric": [operator, _NUMERIC]}
            return {k: splice(v) for k, v in node.items()}
        if isinstance(node, list):
            return [splice(v) for v in node]
        return node

    text = json.dumps(splice(pattern), sort_keys=True)
    return "jsonencode(" + text.replace(json.dumps(_NUMERIC), numeric) + ")"


_NUMERIC = "__numeric_value__"


def key_policy(stack: ModuleStack, service_users: Sequence[str] = ()) -> str:
    """The key policy of a module's KMS key, as an HCL object expression: the account
    administers it (so IAM policies apply), CloudWatch Logs of this region encrypts the
    account's log groups with it, and each of ``service_users`` (service principals) may
    use it on behalf of this account only."""
    account = "data.aws_caller_identity.current.account_id"
    partition = "data.aws_partition.partition.partition"
    region = "data.aws_region.region.id"
    statements = [
        '{Sid = "AccountAdministersKey", Effect = "Allow", '
        f'Principal = {{AWS = "arn:${{{partition}}}:iam::${{{account}}}:root"}}, '
        'Action = "kms:*", Resource = "*"}',
        '{Sid = "CloudWatchLogsEncryptsLogGroups", Effect = "Allow", '
        f'Principal = {{Service = "logs.${{{region}}}.amazonaws.com"}}, '
        'Action = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", '
        '"kms:GenerateDataKey*", "kms:Describe*"], Resource = "*", '
        'Condition = {ArnLike = {"kms:EncryptionContext:aws:logs:arn" = '
        f'"arn:${{{partition}}}:logs:${{{region}}}:${{{account}}}:log-group:*"}}}}}}',
    ]
    for service in service_users:
        sid = "".join(part.capitalize() for part in service.split(".")[0].split("-"))
        statements.append(
            f'{{Sid = "{sid}UsesKeyForThisAccount", Effect = "Allow", '
            f'Principal = {{Service = "{service}"}}, '
            'Action = ["kms:Decrypt", "kms:GenerateDataKey*"], Resource = "*", '
            f'Condition = {{StringEquals = {{"aws:SourceAccount" = {account}}}}}}}'
        )
    return '{Version = "2012-10-17", Statement = [' + ", ".join(statements) + "]}"
