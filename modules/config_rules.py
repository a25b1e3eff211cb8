"""Module ``config_rules``: AWS Config finds the conditions that lead to our threats; the
``config_remediator`` fixes what is safe to fix and reports the rest.

- The managed rules of ``modules/config_rules_catalog.py`` (``for_each`` over the catalog
  merged with the ``rules`` input, which enables, disables or re-parameterises each one),
  as account rules or, with ``organization_rules``, as organisation rules.
- The ``dangling-dns`` custom Lambda rule (``functions/dangling_dns``), on a schedule and
  on Route 53 changes.
- An EventBridge rule on NON_COMPLIANT "Config Rules Compliance Change" events of the rules
  that have a fix, to the remediator (``auto_remediate`` per rule, off by default).
- Optionally (``create_recorder``) the configuration recorder, its delivery channel and
  an encrypted delivery bucket.
"""

from __future__ import annotations

import json
from typing import Any

from cdktn import TerraformLocal, Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.config_config_rule import (
    ConfigConfigRule,
    ConfigConfigRuleSource,
    ConfigConfigRuleSourceSourceDetail,
)
from cdktn_provider_aws.config_configuration_recorder import (
    ConfigConfigurationRecorder,
    ConfigConfigurationRecorderRecordingGroup,
)
from cdktn_provider_aws.config_configuration_recorder_status import (
    ConfigConfigurationRecorderStatus,
)
from cdktn_provider_aws.config_delivery_channel import ConfigDeliveryChannel
from cdktn_provider_aws.config_organization_managed_rule import ConfigOrganizationManagedRule
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktn_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)

from bundle.inputs import Attribute, Input, Rule, Shape, hcl_string, one_of, regex
from bundle.module import REPORTING_INPUTS, ModuleStack, Output, ref
from modules.config_rules_catalog import CATALOG, DANGLING_DNS_RULE, terraform_catalog

FREQUENCIES = ("One_Hour", "Three_Hours", "Six_Hours", "Twelve_Hours", "TwentyFour_Hours")
RULE_OVERRIDE = Shape(
    "config_rule_override",
    (
        Attribute("enabled", "bool", None),
        Attribute("auto_remediate", "bool", None),
        Attribute("parameters", "map(string)", None),
    ),
)


def _known_rules() -> Rule:
    keys = sorted(CATALOG)
    listed = ", ".join(hcl_string(k) for k in keys)
    return Rule(
        condition=f"alltrue([for k in keys({{v}}) : contains([{listed}], k)])",
        message="Every key of rules must be a catalog rule: " + ", ".join(keys) + ".",
        check=lambda value: set(value) <= set(keys),
    )


def _known_parameters() -> Rule:
    names = {k: list(rule.parameter_names) for k, rule in sorted(CATALOG.items())}
    literal = (
        "{"
        + ", ".join(
            f"{hcl_string(k)} = [{', '.join(hcl_string(n) for n in v)}]" for k, v in names.items()
        )
        + "}"
    )

    def check(value: dict[str, Any]) -> bool:
        for key, override in value.items():
            if isinstance(override, dict):
                parameters = override.get("parameters")
            else:
                parameters = getattr(override, "parameters", None)
            if parameters and not set(parameters) <= set(names.get(key, [])):
                return False
        return True

    return Rule(
        condition=f"alltrue([for k, v in {{v}} : v.parameters == null || "
        f"alltrue([for p in keys(coalesce(v.parameters, {{}})) : "
        f"contains(lookup({literal}, k, []), p)])])",
        message="A parameter in rules is not one the managed rule accepts (see the "
        "catalog in the module README and AWS's managed rules list).",
        check=check,
    )


class ConfigRulesModule(ModuleStack):
    name = "config_rules"
    title = "Config rules: detective controls, safe fixes and the dangling-DNS rule"
    summary = (
        "AWS Config managed rules from a catalog (each with the threats it guards "
        "against), the `dangling-dns` custom Lambda rule for subdomain takeover, and the "
        "`config_remediator` Lambda that EventBridge calls on NON_COMPLIANT compliance "
        "changes of the rules with a safe fix: revoke world SSH/RDP ingress (only those "
        "rules), S3 Block Public Access, S3 default encryption, deactivate old access keys "
        "(never delete), require IMDSv2. Fixes run only where `auto_remediate` is on for "
        "the rule (off by default: a report says what the fix would do), never in dry-run "
        "and never on a resource tagged `playbook:remediation=skip`; every outcome is "
        "reported to the notifications topic. Optionally creates the configuration "
        "recorder, its delivery channel and a KMS-encrypted delivery bucket."
    )
    function = "config_remediator"
    extra_functions = ("dangling_dns",)
    limits = (
        "AWS Config allows one configuration recorder per account and region: "
        "`create_recorder` is false by default because most accounts have one (often from "
        "Control Tower); managed rules evaluate nothing without a recorder.",
        "Organisation rules (`organization_rules`) can be created only from the "
        "organisation's management account or a delegated administrator for Config; "
        "member accounts see them as `OrgConfigRule-<name>-<8 characters>`, which the "
        "remediator recognises. They replace the account rules, and the `dangling-dns` "
        "custom rule stays an account rule.",
        "Route 53 is a global service whose API calls CloudTrail delivers to EventBridge "
        "in us-east-1 only: in other regions `dangling-dns` runs on its schedule alone.",
        "PutEvaluations takes at most 100 evaluations per call and 256 characters of "
        "annotation: the rule sends batches of 100 and shortens long annotations.",
        "Config accepts one StartConfigRulesEvaluation per rule per minute: a Route 53 "
        "change during a running evaluation is covered by that evaluation.",
    )
    inputs = (
        Input(
            "rules",
            "map(string)",
            "Per catalog rule (key = the rule's catalog key), what differs from the "
            "catalog: `enabled` turns it on or off, `auto_remediate` lets the remediator "
            "fix NON_COMPLIANT resources (default off: report only), `parameters` are "
            "merged over the catalog's input parameters. See "
            "https://docs.aws.amazon.com/config/latest/developerguide/managed-rules-by-aws-config.html.",
            default={},
            value=RULE_OVERRIDE,
            rules=(_known_rules(), _known_parameters()),
        ),
        Input(
            "organization_rules",
            "bool",
            "Create the catalog rules as organisation rules (from the management account or "
            "Config's delegated administrator) instead of account rules. See "
            "https://docs.aws.amazon.com/config/latest/developerguide/config-rule-multi-account-deployment.html.",
            default=False,
        ),
        Input(
            "organization_excluded_accounts",
            "list(string)",
            "Accounts the organisation rules leave out.",
            default=[],
            each=(regex(r"^[0-9]{12}$", "Must be a 12-digit AWS account id."),),
        ),
        Input(
            "create_recorder",
            "bool",
            "Create the configuration recorder (all supported resource types), its delivery "
            "channel and a KMS-encrypted delivery bucket. Most accounts have a recorder "
            "already; AWS allows one per region.",
            default=False,
        ),
        Input(
            "global_resources_enabled",
            "bool",
            "Whether the created recorder records global resources (IAM). Turn it on in one "
            "region per account only, or IAM changes are recorded (and paid) in each.",
            default=True,
        ),
        Input(
            "delivery_bucket_force_destroy",
            "bool",
            "Whether destroying the module empties and deletes the delivery bucket.",
            default=False,
        ),
        Input(
            "dry_run_enabled",
            "bool",
            "Report what the remediator would change without changing anything, even for "
            "rules with auto_remediate on.",
            default=False,
        ),
        Input(
            "create_dangling_dns_rule",
            "bool",
            "Create the dangling-dns custom rule and its Lambda (Route 53 records pointing "
            "at S3 website buckets, CloudFront distributions, Elastic Beanstalk "
            "environments, load balancers or Elastic IPs this account no longer has).",
            default=True,
        ),
        Input(
            "dangling_dns_frequency",
            "string",
            "How often Config runs the dangling-dns rule (a Config execution frequency).",
            default="TwentyFour_Hours",
            rules=(one_of(FREQUENCIES),),
        ),
        Input(
            "elastic_ip_regions",
            "list(string)",
            "Regions whose Elastic IPs an A record may point at; empty is the module's region.",
            default=[],
            each=(regex(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", "Must be a region such as eu-west-1."),),
        ),
        *REPORTING_INPUTS,
    )
    outputs = (
        Output("config_rule_arns", "ARNs of the account rules, by catalog key."),
        Output("organization_rule_arns", "ARNs of the organisation rules, by catalog key."),
        Output("dangling_dns_rule_arn", "ARN of the dangling-dns custom rule."),
        Output("kms_key_arn", "ARN of the module's KMS key (logs, queues, delivery bucket)."),
        Output("config_remediator_function_arn", "ARN of the config_remediator Lambda."),
        Output("dangling_dns_function_arn", "ARN of the dangling-dns rule's Lambda."),
        Output("event_rule_arn", "ARN of the EventBridge rule sending NON_COMPLIANT changes."),
        Output("recorder_name", "Name of the configuration recorder the module created."),
        Output("delivery_bucket_name", "Name of the delivery bucket the module created."),
    )

    def build(self) -> None:
        key = self.module_key(
            "Playbook as Code config_rules: logs, queues, Config delivery bucket",
            30,
            service_users=("config.amazonaws.com",),
        )
        key_arn = self.expr(ref(key, "arn"))
        TerraformLocal(self, "catalog", terraform_catalog())
        TerraformLocal(
            self,
            "config_rules",
            self.expr(
                "{for k, v in local.catalog : k => {"
                "source = v.source, remediation = v.remediation, "
                "enabled = try(var.rules[k].enabled, null) == null ? v.enabled : var.rules[k].enabled, "
                "auto_remediate = try(var.rules[k].auto_remediate, null) == null ? false : var.rules[k].auto_remediate, "
                "parameters = jsonencode(merge(v.parameters, try(var.rules[k].parameters, null) == null ? {} : var.rules[k].parameters))"
                "}}"
            ),
        )
        TerraformLocal(
            self,
            "enabled_rules",
            self.expr("{for k, v in local.config_rules : k => v if v.enabled}"),
        )
        TerraformLocal(
            self,
            "remediable_rules",
            self.expr('{for k, v in local.enabled_rules : k => v if v.remediation != ""}'),
        )
        status = self._recorder(key_arn)
        self._managed_rules(status)
        remediator = self.remediator(
            count_expression="var.create ? 1 : 0",
            kms_key_arn=key_arn,
            resources=self._remediator_resources(),
            environment={
                "RULES": "${jsonencode({for k, v in local.remediable_rules : "
                '"${var.name_prefix}-${k}" => {action = v.remediation, '
                "auto_remediate = v.auto_remediate, parameters = jsondecode(v.parameters)}})}",
                "DRY_RUN": "${var.dry_run_enabled}",
                "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
            },
        )
        event_rule = self._compliance_events(remediator)
        dangling = self._dangling_dns(key_arn, status)
        self.output("config_rule_arns", "{for k, r in aws_config_config_rule.managed : k => r.arn}")
        self.output(
            "organization_rule_arns",
            "{for k, r in aws_config_organization_managed_rule.organization : k => r.arn}",
        )
        self.output("dangling_dns_rule_arn", f"try({ref(dangling, 'arn')}, null)")
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output("config_remediator_function_arn", f"try({ref(remediator, 'arn')}, null)")
        self.output(
            "dangling_dns_function_arn", "try(aws_lambda_function.dangling_dns[0].arn, null)"
        )
        self.output("event_rule_arn", f"try({ref(event_rule, 'arn')}, null)")
        self.output(
            "recorder_name", "try(aws_config_configuration_recorder.recorder[0].name, null)"
        )
        self.output("delivery_bucket_name", "try(aws_s3_bucket.delivery[0].bucket, null)")

    # ------------------------------------------------------------------ rules
    def _managed_rules(self, status: ConfigConfigurationRecorderStatus) -> None:
        rule = ConfigConfigRule(
            self,
            "managed",
            name="${var.name_prefix}-${each.key}",
            description="Playbook as Code catalog rule ${each.key} (config_rules module)",
            source=ConfigConfigRuleSource(owner="AWS", source_identifier="${each.value.source}"),
            input_parameters='${each.value.parameters == "{}" ? null : each.value.parameters}',
            tags=self.tags(),
            depends_on=[status],
        )
        rule.add_override(
            "for_each", "${var.create && !var.organization_rules ? local.enabled_rules : {}}"
        )
        organization = ConfigOrganizationManagedRule(
            self,
            "organization",
            name="${var.name_prefix}-${each.key}",
            description="Playbook as Code catalog rule ${each.key} (config_rules module)",
            rule_identifier="${each.value.source}",
            input_parameters='${each.value.parameters == "{}" ? null : each.value.parameters}',
            excluded_accounts=Token.as_list("${var.organization_excluded_accounts}"),
            depends_on=[status],
        )
        organization.add_override(
            "for_each", "${var.create && var.organization_rules ? local.enabled_rules : {}}"
        )

    def _remediator_resources(self) -> dict[str, str]:
        partition, region, account = self.arn_partition, self.region_name, self.account_id
        ec2 = f"arn:{partition}:ec2:{region}:{account}"
        optional_arn = '{0} == "" ? [] : [{0}]'
        return {
            "describe": '["*"]',
            "security_groups": f'["{ec2}:security-group/*"]',
            "instances": f'["{ec2}:instance/*"]',
            "buckets": f'["arn:{partition}:s3:::*"]',
            "users": f'["arn:{partition}:iam::{account}:user/*"]',
            "notify_topic": optional_arn.format("var.notify_topic_arn"),
            "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
        }

    def _compliance_events(self, remediator: object) -> CloudwatchEventRule:
        count = Token.as_number("${var.create && length(local.remediable_rules) > 0 ? 1 : 0}")
        names = (
            'concat([for k in keys(local.remediable_rules) : "${var.name_prefix}-${k}"], '
            '[for k in keys(local.remediable_rules) : {prefix = "OrgConfigRule-${var.name_prefix}-${k}-"}])'
        )
        rule = CloudwatchEventRule(
            self,
            "compliance_change",
            count=count,
            name="${var.name_prefix}-config-non-compliant",
            description="NON_COMPLIANT changes of the config_rules rules with a safe fix go "
            "to the config_remediator",
            event_pattern=self.expr(
                'jsonencode({source = ["aws.config"], '
                '"detail-type" = ["Config Rules Compliance Change"], '
                'detail = {messageType = ["ComplianceChangeNotification"], '
                'newEvaluationResult = {complianceType = ["NON_COMPLIANT"]}, '
                f"configRuleName = {names}}}}})"
            ),
            tags=self.tags(),
        )
        function_ref = ref(remediator, "arn")  # type: ignore[arg-type]
        self.event_target(
            "compliance_change_target",
            rule=rule,
            arn=self.expr(function_ref),
            target_id="config-remediator",
            count=count,
        )
        LambdaPermission(
            self,
            "compliance_change_invoke",
            count=count,
            statement_id="AllowEventBridge-compliance-change",
            action="lambda:InvokeFunction",
            function_name=self.expr(ref(remediator, "function_name")),  # type: ignore[arg-type]
            principal="events.amazonaws.com",
            source_arn=self.expr(ref(rule, "arn")),
        )
        return rule

    def _dangling_dns(
        self, key_arn: str, status: ConfigConfigurationRecorderStatus
    ) -> ConfigConfigRule:
        enabled = "var.create && var.create_dangling_dns_rule"
        count = Token.as_number(f"${{{enabled} ? 1 : 0}}")
        partition, region, account = self.arn_partition, self.region_name, self.account_id
        function = self.remediator(
            lambda_name="dangling_dns",
            count_expression=f"{enabled} ? 1 : 0",
            kms_key_arn=key_arn,
            resources={
                "describe": '["*"]',
                "hosted_zones": f'["arn:{partition}:route53:::hostedzone/*"]',
                "config_rules": f'["arn:{partition}:config:{region}:{account}:config-rule/*"]',
            },
            environment={
                "CONFIG_RULE_NAME": f"${{var.name_prefix}}-{DANGLING_DNS_RULE}",
                "ELASTIC_IP_REGIONS": "${jsonencode(var.elastic_ip_regions)}",
            },
            timeout=300,
        )
        permission = LambdaPermission(
            self,
            "dangling_dns_from_config",
            count=count,
            statement_id="AllowConfigRule",
            action="lambda:InvokeFunction",
            function_name=self.expr(ref(function, "function_name")),
            principal="config.amazonaws.com",
            source_account=account,
        )
        rule = ConfigConfigRule(
            self,
            "dangling_dns_rule",
            count=count,
            name=f"${{var.name_prefix}}-{DANGLING_DNS_RULE}",
            description="Route 53 records that point at S3 website buckets, CloudFront "
            "distributions, Elastic Beanstalk environments, load balancers or Elastic IPs "
            "this account no longer has (subdomain takeover)",
            source=ConfigConfigRuleSource(
                owner="CUSTOM_LAMBDA",
                source_identifier=self.expr(ref(function, "arn")),
                source_detail=[
                    ConfigConfigRuleSourceSourceDetail(
                        message_type="ScheduledNotification",
                        maximum_execution_frequency="${var.dangling_dns_frequency}",
                    )
                ],
            ),
            tags=self.tags(),
            depends_on=[permission, status],
        )
        changes = CloudwatchEventRule(
            self,
            "route53_changes",
            count=count,
            name="${var.name_prefix}-dangling-dns-route53-changes",
            description="Route 53 record and zone changes start a dangling-dns evaluation",
            event_pattern=json.dumps(
                {
                    "source": ["aws.route53"],
                    "detail-type": ["AWS API Call via CloudTrail"],
                    "detail": {
                        "eventSource": ["route53.amazonaws.com"],
                        "eventName": [
                            "ChangeResourceRecordSets",
                            "CreateHostedZone",
                            "DeleteHostedZone",
                        ],
                    },
                },
                sort_keys=True,
            ),
            tags=self.tags(),
        )
        self.event_target(
            "route53_changes_target",
            rule=changes,
            arn=self.expr(ref(function, "arn")),
            target_id="dangling-dns",
            count=count,
        )
        LambdaPermission(
            self,
            "route53_changes_invoke",
            count=count,
            statement_id="AllowEventBridge-route53-changes",
            action="lambda:InvokeFunction",
            function_name=self.expr(ref(function, "function_name")),
            principal="events.amazonaws.com",
            source_arn=self.expr(ref(changes, "arn")),
        )
        return rule

    # ------------------------------------------------------------------ recorder
    def _recorder(self, key_arn: str) -> ConfigConfigurationRecorderStatus:
        count = Token.as_number("${var.create && var.create_recorder ? 1 : 0}")
        partition, account = self.arn_partition, self.account_id
        bucket = S3Bucket(
            self,
            "delivery",
            count=count,
            bucket=f"${{var.name_prefix}}-config-{account}-{self.region_name}",
            force_destroy=Token.as_any("${var.delivery_bucket_force_destroy}"),
            tags=self.tags(),
        )
        bucket_id = self.expr(ref(bucket, "id"))
        arn = ref(bucket, "arn")
        S3BucketVersioningA(
            self,
            "delivery_versioning",
            count=count,
            bucket=bucket_id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        self.private_bucket("delivery", bucket_id, key_arn, count)
        S3BucketLifecycleConfiguration(
            self,
            "delivery_lifecycle",
            count=count,
            bucket=bucket_id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=7
                        )
                    ],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=90
                        )
                    ],
                )
            ],
        )
        # Config's delivery permissions (AWS Config developer guide, "Permissions for the
        # Amazon S3 Bucket"), limited to this account, and TLS only.
        self.tls_only_policy(
            "delivery",
            bucket,
            count,
            '{Sid = "AWSConfigBucketPermissionsCheck", Effect = "Allow", '
            'Principal = {Service = "config.amazonaws.com"}, '
            f'Action = ["s3:GetBucketAcl", "s3:ListBucket"], Resource = {arn}, '
            'Condition = {StringEquals = {"AWS:SourceAccount" = '
            "data.aws_caller_identity.current.account_id}}}",
            '{Sid = "AWSConfigBucketDelivery", Effect = "Allow", '
            'Principal = {Service = "config.amazonaws.com"}, Action = "s3:PutObject", '
            f'Resource = "${{{arn}}}/AWSLogs/${{data.aws_caller_identity.current.account_id}}/Config/*", '
            'Condition = {StringEquals = {"s3:x-amz-acl" = "bucket-owner-full-control", '
            '"AWS:SourceAccount" = data.aws_caller_identity.current.account_id}}}',
        )
        role = self.role(
            "recorder_role",
            purpose="config-recorder",
            services=["config.amazonaws.com"],
            count=count,
        )
        IamRolePolicyAttachment(
            self,
            "recorder_managed_policy",
            count=count,
            role=self.expr(ref(role, "name")),
            policy_arn=f"arn:{partition}:iam::aws:policy/service-role/AWS_ConfigRole",
        )
        IamRolePolicy(
            self,
            "recorder_delivery_policy",
            count=count,
            name="deliver-to-bucket",
            role=self.expr(ref(role, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = ['
                '{Sid = "Deliver", Effect = "Allow", Action = ["s3:PutObject"], '
                f'Resource = "${{{arn}}}/AWSLogs/${{data.aws_caller_identity.current.account_id}}/Config/*"}}, '
                '{Sid = "CheckBucket", Effect = "Allow", Action = ["s3:GetBucketAcl"], '
                f"Resource = {arn}}}, "
                '{Sid = "EncryptDeliveries", Effect = "Allow", '
                'Action = ["kms:GenerateDataKey", "kms:Decrypt"], '
                f"Resource = {key_arn.removeprefix('${').removesuffix('}')}}}]}})"
            ),
        )
        recorder = ConfigConfigurationRecorder(
            self,
            "recorder",
            count=count,
            name="${var.name_prefix}-recorder",
            role_arn=self.expr(ref(role, "arn")),
            recording_group=ConfigConfigurationRecorderRecordingGroup(
                all_supported=True,
                include_global_resource_types=Token.as_any("${var.global_resources_enabled}"),
            ),
        )
        channel = ConfigDeliveryChannel(
            self,
            "delivery_channel",
            count=count,
            name="${var.name_prefix}-delivery",
            s3_bucket_name=self.expr(ref(bucket, "bucket")),
            s3_kms_key_arn=key_arn,
            depends_on=[recorder],
        )
        return ConfigConfigurationRecorderStatus(
            self,
            "recorder_status",
            count=count,
            name=self.expr(ref(recorder, "name")),
            is_enabled=True,
            depends_on=[channel],
        )
