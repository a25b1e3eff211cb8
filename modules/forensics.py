"""Module ``forensics``: contain a compromised EC2 instance step by step, keep the evidence.

A Step Functions Standard workflow (definition in ``functions/forensics/workflow.py``)
runs the ``forensics`` step Lambda through the isolation steps; an evidence bucket (KMS,
versioned, Object Lock, public access blocked, TLS only) keeps what it collects; two SSM
documents collect volatile evidence on the instance; EventBridge rules start the workflow
for chosen GuardDuty findings (off by default) and for the Security Hub Isolate /
Terminate custom actions (the incident_response module's outputs).
"""

from __future__ import annotations

import json

from cdktn import Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
)
from cdktn_provider_aws.s3_bucket_object_lock_configuration import (
    S3BucketObjectLockConfigurationA,
    S3BucketObjectLockConfigurationRuleA,
    S3BucketObjectLockConfigurationRuleDefaultRetentionA,
)
from cdktn_provider_aws.sfn_state_machine import (
    SfnStateMachine,
    SfnStateMachineLoggingConfiguration,
    SfnStateMachineTracingConfiguration,
)
from cdktn_provider_aws.ssm_document import SsmDocument

from bundle.inputs import ARN, Input, Rule, integer_between, one_of, regex
from bundle.module import OPTIONAL_ARN, REPORTING_INPUTS, ModuleStack, Output, ref, splat
from functions.forensics import documents, workflow

# GuardDuty finding types (prefixes) where our instance is the actor: mining, a backdoor
# or trojan calling out, the instance attacking or scanning others. Brute-force types
# report both directions; the workflow isolates only when the direction is OUTBOUND.
# https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_finding-types-ec2.html
DEFAULT_FINDING_TYPES = [
    "CryptoCurrency:EC2/",
    "Backdoor:EC2/",
    "Trojan:EC2/",
    "Impact:EC2/BitcoinDomainRequest.Reputation",
    "Impact:EC2/MaliciousDomainRequest.Reputation",
    "Impact:EC2/PortSweep",
    "Impact:EC2/WinRMBruteForce",
    "Recon:EC2/Portscan",
    "UnauthorizedAccess:EC2/SSHBruteForce",
    "UnauthorizedAccess:EC2/RDPBruteForce",
    "UnauthorizedAccess:EC2/TorClient",
]
SUBNET_ID = regex(
    r"^subnet-[0-9a-f]{8,17}$", "Must be a subnet id such as subnet-0123456789abcdef0."
)
GROUP_ID = regex(
    r"^sg-[0-9a-f]{8,17}$", "Must be a security group id such as sg-0123456789abcdef0."
)
ROLE_ARN = regex(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
    "Must be an IAM role ARN (wildcards allowed), such as arn:aws:iam::111122223333:role/web-*.",
)
FINDING_TYPE_PREFIX = regex(
    r"^[A-Za-z]+:[A-Za-z0-9]+/[A-Za-z0-9.!&_-]*$",
    "Must be a GuardDuty finding type or type prefix, such as CryptoCurrency:EC2/.",
)
BUCKET_NAME = regex(
    r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "Must be empty or an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens).",
)


# S3 bucket names are global across all AWS accounts: the default carries account and region.
_BUCKET_NAME = (
    'var.evidence_bucket != "" ? var.evidence_bucket : '
    '"${var.name_prefix}-evidence-${data.aws_caller_identity.current.account_id}-'
    '${data.aws_region.region.id}"'
)


def _literal(text: str) -> str:
    """``text`` as a Terraform string that is never interpolated (shell ``${...}``)."""
    return text.replace("${", "$${").replace("%{", "%%{")


ANY_ARN = Rule(OPTIONAL_ARN.condition, ARN.message, OPTIONAL_ARN.check)


class ForensicsModule(ModuleStack):
    name = "forensics"
    title = "Forensics: isolate a compromised EC2 instance and keep the evidence"
    summary = (
        "A Step Functions Standard workflow (logging and X-Ray on) that contains an EC2 "
        "instance step by step without destroying what the investigation needs: tag it and "
        "turn on termination and stop protection (volumes kept on termination); detach it "
        "from its Auto Scaling group without lowering desired capacity and deregister it "
        "from every target group; capture volatile evidence through SSM Run Command (process "
        "list, network connections, a memory image with AVML or LiME) when the instance is "
        "managed; snapshot every volume; disassociate its instance profile and revoke the "
        "role's older sessions; swap its security groups to an allow-all group and then an "
        "isolation group with no rules, so tracked connections are cut; report. A re-run "
        "repeats nothing; a failed swap restores the original groups; Terminate runs only "
        "once the snapshots are complete and the evidence is kept. Evidence goes to a "
        "KMS-encrypted, versioned, Object Lock bucket. EventBridge rules start it for "
        "chosen GuardDuty findings and for the Security Hub Isolate / Terminate actions."
    )
    function = "forensics"
    limits = (
        "S3 bucket names are global across all AWS accounts and at most 63 characters: the "
        "default `<name_prefix>-evidence-<account id>-<region>` is unique, and its length is "
        "checked at plan.",
        "Object Lock cannot be turned off and keeps versioning on for good; in COMPLIANCE "
        "mode nobody, not even the root user, can delete evidence before its retention ends.",
        "EBS copies only completed snapshots: copies with the evidence key are made after the "
        "network isolation, and a termination waits (up to two hours) for snapshots to "
        "complete.",
        "Run Command returns at most 24,000 characters of output: artefacts are uploaded by "
        "the instance itself, which needs the evidence_writer_policy_arn policy and the AWS "
        "CLI.",
        "Step Functions keeps at most 256 KB of state per execution: steps keep their "
        "reports, not the evidence, in the execution.",
    )
    inputs = (
        Input(
            "evidence_bucket",
            "string",
            "Name of the evidence bucket. Empty gives `<name_prefix>-evidence-<account id>-"
            "<region>` (S3 bucket names are global across all AWS accounts).",
            default="",
            rules=(BUCKET_NAME,),
        ),
        Input(
            "evidence_retention_days",
            "number",
            "Days every evidence object version is locked by Object Lock (1-36500). See "
            "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html.",
            default=365,
            rules=(integer_between(1, 36500),),
        ),
        Input(
            "evidence_lock_mode",
            "string",
            "Object Lock mode: GOVERNANCE (users with s3:BypassGovernanceRetention may still "
            "delete) or COMPLIANCE (nobody can, not even the root user, until retention ends).",
            default="GOVERNANCE",
            rules=(one_of(["GOVERNANCE", "COMPLIANCE"]),),
        ),
        Input(
            "evidence_bucket_force_destroy",
            "bool",
            "Whether `terraform destroy` may empty the evidence bucket (governance-mode "
            "versions are deleted with a bypass). Keep false outside test accounts.",
            default=False,
        ),
        Input(
            "kms_deletion_window_days",
            "number",
            "Waiting period before the module's KMS key is deleted after destroy (7-30).",
            default=30,
            rules=(integer_between(7, 30),),
        ),
        Input(
            "create_guardduty_rule",
            "bool",
            "Whether GuardDuty findings of `guardduty_finding_types` start the workflow "
            "without a click. Off by default: isolation interrupts the workload.",
            default=False,
        ),
        Input(
            "guardduty_finding_types",
            "list(string)",
            "GuardDuty finding types (or type prefixes) that start the workflow when "
            "create_guardduty_rule is on: those where our instance is the actor. Brute-force "
            "findings are acted on only when the instance is the attacker (OUTBOUND).",
            default=DEFAULT_FINDING_TYPES,
            each=(FINDING_TYPE_PREFIX,),
        ),
        Input(
            "isolate_action_arn",
            "string",
            "ARN of the Security Hub Isolate Instance custom action (the incident_response "
            "module's output). Empty creates no rule for it.",
            default="",
            rules=(ANY_ARN,),
        ),
        Input(
            "terminate_action_arn",
            "string",
            "ARN of the Security Hub Terminate Instance custom action. The workflow isolates "
            "first and terminates only once snapshots are complete and the evidence is kept.",
            default="",
            rules=(ANY_ARN,),
        ),
        Input(
            "memory_capture_enabled",
            "bool",
            "Whether to take a memory image (AVML, else LiME, when installed on the instance).",
            default=True,
        ),
        Input(
            "command_timeout_seconds",
            "number",
            "How long an evidence command may wait for the SSM agent to start it (30-2592000).",
            default=3600,
            rules=(integer_between(30, 2592000),),
        ),
        Input(
            "copy_snapshots_enabled",
            "bool",
            "Whether to copy each snapshot encrypted with the module's evidence key once it "
            "completes (a copy the workload's key holders cannot delete or read).",
            default=False,
        ),
        Input(
            "forensics_subnet_ids",
            "list(string)",
            "Subnets (one per Availability Zone) where the workflow attaches an "
            "investigators' network interface to the isolated instance. Empty attaches none.",
            default=[],
            each=(SUBNET_ID,),
        ),
        Input(
            "forensics_security_group_ids",
            "list(string)",
            "Security groups of the investigators' interface (required with forensics_subnet_ids).",
            default=[],
            each=(GROUP_ID,),
        ),
        Input(
            "instance_role_arns",
            "list(string)",
            "Roles whose sessions the workflow may revoke (inline policy "
            "AWSRevokeOlderSessions). Empty allows every role of the account: narrow it to "
            "your instance roles (wildcards allowed) where you can.",
            default=[],
            each=(ROLE_ARN,),
        ),
        *REPORTING_INPUTS,
    )
    outputs = (
        Output("state_machine_arn", "ARN of the isolation workflow (start it by hand: README)."),
        Output("evidence_bucket_name", "Name of the Object Lock evidence bucket."),
        Output("evidence_bucket_arn", "ARN of the evidence bucket."),
        Output("kms_key_arn", "ARN of the evidence key (bucket, snapshot copies, logs)."),
        Output(
            "evidence_writer_policy_arn",
            "Managed policy to attach to instance roles so SSM evidence uploads succeed.",
        ),
        Output("forensics_function_arn", "ARN of the step Lambda."),
        Output("volatile_document_name", "SSM document collecting processes and connections."),
        Output("memory_document_name", "SSM document taking the memory image."),
        Output("event_rule_arns", "Map of trigger (guardduty, security_hub) to rule ARN."),
    )

    def build(self) -> None:
        key = self.module_key(
            "Playbook as Code forensics: evidence bucket, snapshot copies, logs",
            Token.as_number("${var.kms_deletion_window_days}"),
        )
        key_arn = self.expr(ref(key, "arn"))
        bucket = self._evidence_bucket(key_arn)
        bucket_arn = self.expr(ref(bucket, "arn"))
        volatile = SsmDocument(
            self,
            "volatile",
            count=self.count,
            name="${var.name_prefix}-forensics-volatile",
            document_type="Command",
            document_format="JSON",
            content=_literal(json.dumps(documents.volatile_document(), sort_keys=True)),
            tags=self.tags(),
        )
        memory = SsmDocument(
            self,
            "memory",
            count=Token.as_number("${var.create && var.memory_capture_enabled ? 1 : 0}"),
            name="${var.name_prefix}-forensics-memory",
            document_type="Command",
            document_format="JSON",
            content=_literal(json.dumps(documents.memory_document(), sort_keys=True)),
            tags=self.tags(),
        )
        IamPolicy(
            self,
            "evidence_writer",
            count=self.count,
            name=self.global_name("forensics-evidence-writer"),
            description="Lets an instance's SSM agent upload volatile evidence (forensics module)",
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = ['
                '{Sid = "UploadEvidence", Effect = "Allow", Action = ["s3:PutObject"], '
                f'Resource = "{bucket_arn}/cases/*"}}, '
                '{Sid = "EncryptEvidence", Effect = "Allow", Action = ["kms:GenerateDataKey"], '
                f'Resource = "{key_arn}", '
                'Condition = {StringEquals = {"kms:ViaService" = '
                '"s3.${data.aws_region.region.id}.amazonaws.com"}}}]})'
            ),
            tags=self.tags(),
        )
        account = "${data.aws_caller_identity.current.account_id}"
        partition, region = self.arn_partition, self.region_name
        ec2 = f"arn:{partition}:ec2:{region}:{account}"
        optional_arn = '{0} == "" ? [] : [{0}]'
        function = self.remediator(
            count_expression="var.create ? 1 : 0",
            kms_key_arn=key_arn,
            resources={
                "describe": '["*"]',
                "ec2": "["
                + ", ".join(
                    f'"{arn}"'
                    for arn in (
                        *(
                            f"{ec2}:{kind}/*"
                            for kind in (
                                "instance",
                                "volume",
                                "security-group",
                                "network-interface",
                                "subnet",
                                "vpc",
                            )
                        ),
                        f"arn:{partition}:ec2:{region}::snapshot/*",
                    )
                )
                + "]",
                "auto_scaling_groups": f'["arn:{partition}:autoscaling:{region}:{account}:'
                'autoScalingGroup:*:autoScalingGroupName/*"]',
                "target_groups": f'["arn:{partition}:elasticloadbalancing:{region}:{account}:'
                'targetgroup/*/*"]',
                "instance_profiles": f'["arn:{partition}:iam::{account}:instance-profile/*"]',
                "instance_roles": "length(var.instance_role_arns) > 0 ? var.instance_role_arns"
                f' : ["arn:{partition}:iam::{account}:role/*"]',
                "ssm_documents": f"concat({splat(volatile, 'arn')}, {splat(memory, 'arn')})",
                "managed_instances": f'["{ec2}:instance/*"]',
                "evidence_objects": f'[for arn in {splat(bucket, "arn")} : "${{arn}}/*"]',
                "evidence_bucket": splat(bucket, "arn"),
                "evidence_key": splat(key, "arn"),
                "notify_topic": optional_arn.format("var.notify_topic_arn"),
                "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
            },
            environment={
                "EVIDENCE_BUCKET": self.expr(ref(bucket, "bucket")),
                "EVIDENCE_KMS_KEY_ARN": key_arn,
                "NAME_PREFIX": "${var.name_prefix}",
                "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
                "VOLATILE_DOCUMENT": self.expr(ref(volatile, "name")),
                "MEMORY_DOCUMENT": self.expr(f'try({ref(memory, "name")}, "")'),
                "COMMAND_TIMEOUT_SECONDS": "${var.command_timeout_seconds}",
                "COPY_SNAPSHOTS": "${var.copy_snapshots_enabled}",
                "FORENSICS_SUBNET_IDS": "${jsonencode(var.forensics_subnet_ids)}",
                "FORENSICS_SECURITY_GROUP_IDS": "${jsonencode(var.forensics_security_group_ids)}",
                "ISOLATE_ACTION_ARNS": "${jsonencode(compact([var.isolate_action_arn]))}",
                "TERMINATE_ACTION_ARNS": "${jsonencode(compact([var.terminate_action_arn]))}",
                "GUARDDUTY_FINDING_TYPES": "${jsonencode(var.guardduty_finding_types)}",
            },
            # Describing every target group of a large account takes a while.
            timeout=300,
            preconditions=[
                {
                    "condition": "${length(var.forensics_subnet_ids) == 0 || "
                    "length(var.forensics_security_group_ids) > 0}",
                    "error_message": "forensics_subnet_ids needs forensics_security_group_ids "
                    "for the investigators' interface.",
                },
                {
                    "condition": f"${{length({_BUCKET_NAME}) <= 63}}",
                    "error_message": "The evidence bucket name is longer than S3's 63 "
                    "characters: set evidence_bucket or a shorter name_prefix.",
                },
            ],
        )
        machine = self._state_machine(function, key_arn)
        self._triggers(machine)
        self.output("state_machine_arn", f"try({ref(machine, 'arn')}, null)")
        self.output("evidence_bucket_name", f"try({ref(bucket, 'bucket')}, null)")
        self.output("evidence_bucket_arn", f"try({ref(bucket, 'arn')}, null)")
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output(
            "evidence_writer_policy_arn", "try(aws_iam_policy.evidence_writer[0].arn, null)"
        )
        self.output("forensics_function_arn", f"try({ref(function, 'arn')}, null)")
        self.output("volatile_document_name", f"try({ref(volatile, 'name')}, null)")
        self.output("memory_document_name", f"try({ref(memory, 'name')}, null)")
        self.output(
            "event_rule_arns",
            "{guardduty = try(aws_cloudwatch_event_rule.guardduty[0].arn, null), "
            "security_hub = try(aws_cloudwatch_event_rule.security_hub[0].arn, null)}",
        )

    # ------------------------------------------------------------------ evidence bucket
    def _evidence_bucket(self, key_arn: str) -> S3Bucket:
        bucket = S3Bucket(
            self,
            "evidence",
            count=self.count,
            bucket=self.expr(_BUCKET_NAME),
            object_lock_enabled=True,
            force_destroy=Token.as_any("${var.evidence_bucket_force_destroy}"),
            tags=self.tags(),
        )
        bucket_id = self.expr(ref(bucket, "id"))
        # No aws_s3_bucket_versioning: creating a bucket with Object Lock turns versioning
        # on, and S3 refuses to suspend it (InvalidBucketState), which is what destroying
        # that resource would try.
        S3BucketObjectLockConfigurationA(
            self,
            "evidence_lock",
            count=self.count,
            bucket=bucket_id,
            rule=S3BucketObjectLockConfigurationRuleA(
                default_retention=S3BucketObjectLockConfigurationRuleDefaultRetentionA(
                    mode="${var.evidence_lock_mode}",
                    days=Token.as_number("${var.evidence_retention_days}"),
                )
            ),
        )
        self.private_bucket("evidence", bucket_id, key_arn, self.count)
        S3BucketLifecycleConfiguration(
            self,
            "evidence_lifecycle",
            count=self.count,
            bucket=bucket_id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="abort-incomplete-uploads",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=7
                        )
                    ],
                )
            ],
        )
        self.tls_only_policy("evidence", bucket, self.count)
        return bucket

    # ------------------------------------------------------------------ workflow
    def _state_machine(self, function: object, key_arn: str) -> SfnStateMachine:
        function_arn = self.expr(ref(function, "arn"))  # type: ignore[arg-type]
        log_group = CloudwatchLogGroup(
            self,
            "workflow_logs",
            count=self.count,
            name="/aws/vendedlogs/states/${var.name_prefix}-forensics",
            retention_in_days=Token.as_number("${var.log_retention_days}"),
            kms_key_id=key_arn,
            tags=self.tags(),
        )
        role = self.role(
            "workflow_role",
            purpose="forensics-workflow",
            services=["states.amazonaws.com"],
            count=self.count,
        )
        IamRolePolicy(
            self,
            "workflow_policy",
            count=self.count,
            name="least-privilege",
            role=self.expr(ref(role, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = ['
                '{Sid = "InvokeSteps", Effect = "Allow", Action = ["lambda:InvokeFunction"], '
                f'Resource = ["{function_arn}", "{function_arn}:*"]}}, '
                # Log delivery and X-Ray take no resource-level scoping (AWS's Step Functions
                # logging and tracing guides use "*").
                '{Sid = "DeliverLogs", Effect = "Allow", Action = ["logs:CreateLogDelivery", '
                '"logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery", '
                '"logs:ListLogDeliveries", "logs:PutResourcePolicy", '
                '"logs:DescribeResourcePolicies", "logs:DescribeLogGroups"], Resource = "*"}, '
                '{Sid = "Trace", Effect = "Allow", Action = ["xray:PutTraceSegments", '
                '"xray:PutTelemetryRecords", "xray:GetSamplingRules", '
                '"xray:GetSamplingTargets"], Resource = "*"}]})'
            ),
        )
        definition = json.dumps(workflow.definition(function_arn), sort_keys=True)
        return SfnStateMachine(
            self,
            "isolation",
            count=self.count,
            name="${var.name_prefix}-forensics-isolation",
            type="STANDARD",
            role_arn=self.expr(ref(role, "arn")),
            definition=definition,
            logging_configuration=SfnStateMachineLoggingConfiguration(
                log_destination=f"${{{ref(log_group, 'arn')}}}:*",
                include_execution_data=True,
                level="ALL",
            ),
            tracing_configuration=SfnStateMachineTracingConfiguration(enabled=True),
            tags=self.tags(),
        )

    def _triggers(self, machine: SfnStateMachine) -> None:
        role = self.role(
            "events_role",
            purpose="forensics-start",
            services=["events.amazonaws.com"],
            count=self.count,
        )
        IamRolePolicy(
            self,
            "events_policy",
            count=self.count,
            name="start-isolation",
            role=self.expr(ref(role, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [{Sid = "StartIsolation", '
                'Effect = "Allow", Action = ["states:StartExecution"], '
                f"Resource = [{ref(machine, 'arn')}]}}]}})"
            ),
        )
        guardduty = (
            'jsonencode({source = ["aws.guardduty"], "detail-type" = ["GuardDuty Finding"], '
            'detail = {resource = {resourceType = ["Instance"]}, '
            "type = [for t in var.guardduty_finding_types : {prefix = t}]}})"
        )
        security_hub = (
            'jsonencode({source = ["aws.securityhub"], '
            '"detail-type" = ["Security Hub Findings - Custom Action"], '
            "resources = compact([var.isolate_action_arn, var.terminate_action_arn])})"
        )
        triggers = {
            "guardduty": (
                "GuardDuty findings where our instance is the actor start the isolation",
                "var.create && var.create_guardduty_rule",
                guardduty,
            ),
            "security_hub": (
                "Security Hub Isolate / Terminate custom actions start the workflow",
                'var.create && (var.isolate_action_arn != "" || var.terminate_action_arn != "")',
                security_hub,
            ),
        }
        for trigger, (description, enabled, pattern) in triggers.items():
            count = Token.as_number(f"${{{enabled} ? 1 : 0}}")
            rule = CloudwatchEventRule(
                self,
                trigger,
                count=count,
                name=f"${{var.name_prefix}}-forensics-{trigger.replace('_', '-')}",
                description=description,
                event_pattern=self.expr(pattern),
                tags=self.tags(),
            )
            target = self.event_target(
                f"{trigger}_target",
                rule=rule,
                arn=self.expr(ref(machine, "arn")),
                target_id="isolation-workflow",
                count=count,
            )
            # Step Functions targets start executions with a role EventBridge assumes.
            target.add_override("role_arn", self.expr(ref(role, "arn")))
