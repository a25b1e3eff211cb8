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
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup  # noqa: E402
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
from cdktn_provider_aws.sqs_queue import SqsQueue  # noqa: E402
from constructs import Construct  # noqa: E402

from bundle.inputs import (  # noqa: E402
    COMMON_INPUTS,
    LOG_RETENTION_DAYS,
    Input,
    integer_between,
    integer_in,
    regex,
)
from functions.common.permissions import Permission  # noqa: E402

MANAGED_BY = "playbook-as-code"
LAMBDA_RUNTIME = "python3.12"
# Powertools is attached as AWS's published layer so function zips stay small.
POWERTOOLS_LAYER = (
    "arn:${data.aws_partition.partition.partition}:lambda:${data.aws_region.region.id}"
    ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:27"
)

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
        "storm from exhausting the account's Lambda concurrency.",
        default=5,
        rules=(integer_between(1, 1000),),
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

    def __init__(self, scope: Construct) -> None:
        super().__init__(scope, self.name)
        # cdktn insists on a provider for its resources; it is removed from the module
        # at synthesis because a reusable module must inherit its caller's provider.
        AwsProvider(self, "aws")
        self.variables: dict[str, TerraformVariable] = {}
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

    def module_key(
        self, description: str, deletion_window_days: float, service_users: Sequence[str] = ()
    ) -> KmsKey:
        """The module's customer-managed KMS key (rotation on) and its alias
        ``alias/<name_prefix>-<module>``; see :func:`key_policy` for who may use it."""
        key = KmsKey(
            self,
            "this",
            count=self.count,
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=deletion_window_days,
            policy=self.expr(f"jsonencode({key_policy(self, service_users)})"),
            tags=self.tags(),
        )
        KmsAlias(
            self,
            "this_alias",
            count=self.count,
            name=f"alias/${{var.name_prefix}}-{self.name.replace('_', '-')}",
            target_key_id=self.expr(ref(key, "key_id")),
        )
        return key

    def output(self, name: str, expression: str) -> None:
        described = {o.name: o.description for o in self.outputs}
        if name not in described:
            raise ValueError(f"{self.name}: output {name} is not declared in outputs")
        TerraformOutput(self, name, value=self.expr(expression), description=described[name])

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
    ) -> LambdaFunction:
        """The paired Lambda with its role, DLQ, log group and generated policy.

        ``resources`` maps each symbolic resource name used in the function's declared
        permissions to a Terraform list expression of ARNs. The role policy is built
        from that declaration alone, plus what the Lambda service itself needs (logs,
        DLQ, environment decryption, X-Ray).
        """
        assert self.function is not None
        name = self.function
        declared = declared_permissions(name)
        unknown = {p.resource for p in declared} - set(resources)
        if unknown:
            raise ValueError(f"{self.name}: no ARNs given for {sorted(unknown)} of {name}")
        function_name = f"${{var.name_prefix}}-{name.replace('_', '-')}"
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
        role = IamRole(
            self,
            f"{name}_role",
            count=count,
            name=f"{function_name}-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                sort_keys=True,
            ),
            tags=self.tags(),
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
        function = LambdaFunction(
            self,
            name,
            count=count,
            function_name=function_name,
            description=f"Playbook as Code {self.name} remediator ({name})",
            role=self.expr(ref(role, "arn")),
            runtime=LAMBDA_RUNTIME,
            handler=f"functions.{name}.handler.lambda_handler",
            filename="${path.module}/function.zip",
            source_code_hash='${filebase64sha256("${path.module}/function.zip")}',
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
                variables={
                    "POWERTOOLS_SERVICE_NAME": name,
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    **environment,
                }
            ),
            tags=self.tags(),
            depends_on=[log_group],
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
