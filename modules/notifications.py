"""Module ``notifications``: where every playbook tells people what happened.

KMS-encrypted SNS topics by severity receive findings (through EventBridge rules this
module can create) and the reports of every other module's remediator. The paired
``notifier`` Lambda turns each message into Slack, Microsoft Teams and Amazon Chime
posts and a readable e-mail, published to a separate e-mail topic.
"""

from __future__ import annotations

import json

from cdktn import Token
from cdktn_provider_aws.cloudwatch_event_bus import CloudwatchEventBus
from cdktn_provider_aws.cloudwatch_event_bus_policy import CloudwatchEventBusPolicy
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktn_provider_aws.sns_topic_subscription import SnsTopicSubscription

from bundle.inputs import (
    EMAIL,
    HTTPS_URL,
    SECRET_NAME,
    Input,
    Rule,
    integer_between,
    number_between,
    one_of,
    regex,
)
from bundle.module import ModuleStack, Output, event_pattern_expression, ref, splat

SEVERITIES = ("critical", "high", "medium", "low", "info")

# EventBridge rules the module can create: which findings go to which severity topic.
# GuardDuty severities are numbers (0-10); every numeric comparison takes its value from
# the high_severity_threshold variable (event_pattern_expression), which splits high from info.
FINDING_RULES = {
    "guardduty_high": (
        "high",
        "GuardDuty findings at or above the high-severity threshold",
        {
            "source": ["aws.guardduty"],
            "detail-type": ["GuardDuty Finding"],
            "detail": {"severity": [{"numeric": [">=", 0]}]},
        },
    ),
    "guardduty_info": (
        "info",
        "GuardDuty findings below the high-severity threshold",
        {
            "source": ["aws.guardduty"],
            "detail-type": ["GuardDuty Finding"],
            "detail": {"severity": [{"numeric": ["<", 0]}]},
        },
    ),
    "securityhub_high": (
        "high",
        "New Security Hub findings labelled HIGH or CRITICAL",
        {
            "source": ["aws.securityhub"],
            "detail-type": ["Security Hub Findings - Imported"],
            "detail": {
                "findings": {
                    "Severity": {"Label": ["HIGH", "CRITICAL"]},
                    "Workflow": {"Status": ["NEW"]},
                }
            },
        },
    ),
    "config_noncompliant": (
        "info",
        "AWS Config rule evaluations that turned NON_COMPLIANT",
        {
            "source": ["aws.config"],
            "detail-type": ["Config Rules Compliance Change"],
            "detail": {"newEvaluationResult": {"complianceType": ["NON_COMPLIANT"]}},
        },
    ),
}

# Remediation reports (functions/common/report.py) as EventBridge events; the hub routes
# them by the severity the remediator gave.
REPORT_RULES = {
    "reports_high": (
        "high",
        "Remediation reports of HIGH severity forwarded by member accounts",
        {
            "source": [{"prefix": "playbook."}],
            "detail-type": ["Playbook Remediation"],
            "detail": {"severity": ["HIGH"]},
        },
    ),
    "reports_info": (
        "info",
        "Remediation reports below HIGH forwarded by member accounts",
        {
            "source": [{"prefix": "playbook."}],
            "detail-type": ["Playbook Remediation"],
            "detail": {"severity": ["MEDIUM", "LOW", "INFO"]},
        },
    ),
}
# What a member account forwards to the hub: the findings the rules above route, and the
# remediators' reports.
FORWARDED = {
    "source": ["aws.guardduty", "aws.securityhub", "aws.config", {"prefix": "playbook."}],
    "detail-type": [
        "GuardDuty Finding",
        "Security Hub Findings - Imported",
        "Config Rules Compliance Change",
        "Playbook Remediation",
    ],
}
ORGANIZATION_ID = regex(
    r"^(o-[a-z0-9]{10,32})?$", "Must be an AWS Organizations id such as o-a1b2c3d4e5, or empty."
)
EVENT_BUS_ARN = regex(
    r"^(arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._-]+)?$",
    "Must be an EventBridge bus ARN such as "
    "arn:aws:events:us-east-1:111122223333:event-bus/playbook-hub, or empty.",
)

INCLUDES_HIGH_AND_INFO = Rule(
    condition='contains({v}, "high") && contains({v}, "info") '
    "&& length(distinct({v})) == length({v})",
    message="Must list each severity once and include both high and info.",
    check=lambda v: "high" in v and "info" in v and len(set(v)) == len(v),
)


class NotificationsModule(ModuleStack):
    name = "notifications"
    title = "Notifications: severity topics, chat and e-mail"
    summary = (
        "KMS-encrypted SNS topics by severity that EventBridge (GuardDuty, Security Hub, "
        "AWS Config findings) and every playbook remediator publish to; e-mail and https "
        "subscriptions; and the `notifier` Lambda, which turns each message into Slack, "
        "Microsoft Teams and Amazon Chime posts (webhook URLs from a Secrets Manager "
        "secret) and a readable plain-text e-mail sent through a separate e-mail topic."
    )
    function = "notifier"
    limits = (
        "SNS e-mail subjects must be ASCII and under 100 characters: the notifier writes them so.",
        "Chat messages have size limits (Slack blocks, Teams cards, Chime 4,096 "
        "characters): every finding text is bounded and escaped for its channel; Teams "
        "cards escape Markdown so finding text never becomes a link.",
        "CloudWatch alarms publish to KMS-encrypted topics only when the key and the topic "
        "admit cloudwatch.amazonaws.com: both do, for this account only.",
    )
    inputs = (
        Input(
            "severities",
            "list(string)",
            "Severity topics to create, one SNS topic each (`<name_prefix>-<severity>`). "
            "Must include high and info, which the finding rules publish to.",
            default=["high", "info"],
            rules=(INCLUDES_HIGH_AND_INFO,),
            each=(one_of(SEVERITIES),),
        ),
        Input(
            "email_addresses",
            "list(string)",
            "E-mail addresses subscribed to the readable e-mail topic. Each address must "
            "confirm the subscription from the message AWS sends it.",
            default=[],
            each=(EMAIL,),
        ),
        Input(
            "https_endpoints",
            "list(string)",
            "https endpoints subscribed to every severity topic; they receive the raw "
            "SNS JSON (for ticketing or SOAR systems). See "
            "https://docs.aws.amazon.com/sns/latest/dg/sns-http-https-endpoint-as-subscriber.html.",
            default=[],
            each=(HTTPS_URL,),
        ),
        Input(
            "webhook_secret_name",
            "string",
            "Name of the Secrets Manager secret holding the chat webhook URLs as JSON "
            '(`{"slack": "https://...", "teams": "...", "chime": "..."}`, any subset). '
            "Webhook URLs are credentials, so they never appear in variables or state. "
            "Empty sends no chat messages.",
            default="",
            rules=(SECRET_NAME,),
        ),
        Input(
            "create_notifier",
            "bool",
            "Whether to create the notifier Lambda (chat and readable e-mail). Without it "
            "the topics still deliver raw JSON to https subscribers.",
            default=True,
        ),
        Input(
            "create_finding_rules",
            "bool",
            "Whether to create EventBridge rules that route GuardDuty, Security Hub and "
            "AWS Config findings into the severity topics.",
            default=True,
        ),
        Input(
            "high_severity_threshold",
            "number",
            "GuardDuty severity (1.0-8.9) at or above which a finding goes to the high "
            "topic; lower ones go to info. GuardDuty rates 7.0-8.9 High, 4.0-6.9 Medium. "
            "See https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_findings-severity.html.",
            default=7,
            rules=(number_between(1, 8.9),),
        ),
        Input(
            "hub_organization_id",
            "string",
            "Makes this deployment the organisation's hub: an EventBridge bus "
            "`<name_prefix>-hub` whose policy admits `events:PutEvents` only from principals "
            "of this AWS Organizations id (`aws:PrincipalOrgID`), with rules that route the "
            "findings and remediation reports member accounts forward into the severity "
            "topics, where the notifier reads them. See "
            "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html.",
            default="",
            rules=(ORGANIZATION_ID,),
        ),
        Input(
            "hub_event_bus_arn",
            "string",
            "Makes this deployment a member: a rule forwards this account's GuardDuty, "
            "Security Hub and AWS Config findings and the remediators' reports to this hub "
            "bus, through a role that may only put events on it. Member remediators still "
            "act locally.",
            default="",
            rules=(EVENT_BUS_ARN,),
        ),
        Input(
            "kms_deletion_window_days",
            "number",
            "Waiting period before the module's KMS key is deleted after destroy (7-30).",
            default=30,
            rules=(integer_between(7, 30),),
        ),
    )
    outputs = (
        Output("kms_key_arn", "ARN of the KMS key that encrypts the topics, queue and logs."),
        Output(
            "topic_arns", "Map of severity to SNS topic ARN; publish findings and reports here."
        ),
        Output("email_topic_arn", "ARN of the topic carrying readable e-mails."),
        Output("notifier_function_arn", "ARN of the notifier Lambda function."),
        Output("notifier_dlq_arn", "ARN of the notifier's dead-letter queue."),
        Output("event_rule_arns", "Map of finding rule name to EventBridge rule ARN."),
        Output("event_bus_arn", "ARN of the hub bus members forward to (hub mode), else null."),
    )

    def build(self) -> None:
        key = self.module_key(
            "Playbook as Code notifications: SNS topics, DLQ and logs",
            Token.as_number("${var.kms_deletion_window_days}"),
            ("events.amazonaws.com", "sns.amazonaws.com", "cloudwatch.amazonaws.com"),
        )
        key_arn = self.expr(ref(key, "arn"))

        topics = SnsTopic(
            self,
            "severity",
            name="${var.name_prefix}-${each.key}",
            kms_master_key_id=key_arn,
            tags=self.tags(),
        )
        topics.add_override("for_each", "${var.create ? toset(var.severities) : toset([])}")
        SnsTopicPolicy(
            self,
            "severity_policy",
            arn="${aws_sns_topic.severity[each.key].arn}",
            policy=self.expr(
                "jsonencode(" + self._topic_policy("aws_sns_topic.severity[each.key].arn") + ")"
            ),
        ).add_override("for_each", "${aws_sns_topic.severity}")

        email_topic = SnsTopic(
            self,
            "email",
            count=self.count,
            name="${var.name_prefix}-email",
            kms_master_key_id=key_arn,
            tags=self.tags(),
        )
        SnsTopicSubscription(
            self,
            "email_subscription",
            topic_arn=self.expr(ref(email_topic, "arn")),
            protocol="email",
            endpoint="${each.value}",
        ).add_override("for_each", "${var.create ? toset(var.email_addresses) : toset([])}")
        SnsTopicSubscription(
            self,
            "https_subscription",
            topic_arn="${aws_sns_topic.severity[each.value[0]].arn}",
            protocol="https",
            endpoint="${each.value[1]}",
        ).add_override(
            "for_each",
            "${{for pair in setproduct(var.create ? var.severities : [], var.https_endpoints) : "
            '"${pair[0]} ${pair[1]}" => pair}}',
        )

        notifier_enabled = "var.create && var.create_notifier"
        secret_arns = (
            'var.webhook_secret_name == "" ? [] : ['
            '"arn:${data.aws_partition.partition.partition}:secretsmanager:'
            "${data.aws_region.region.id}:${data.aws_caller_identity.current.account_id}:"
            'secret:${var.webhook_secret_name}-??????"]'
        )
        notifier = self.remediator(
            count_expression=f"{notifier_enabled} ? 1 : 0",
            kms_key_arn=key_arn,
            resources={
                "webhook_secret": secret_arns,
                "email_topic": splat(email_topic, "arn"),
                "kms_key": splat(key, "arn"),
            },
            environment={
                "WEBHOOK_SECRET_NAME": "${var.webhook_secret_name}",
                "EMAIL_TOPIC_ARN": self.expr(ref(email_topic, "arn")),
            },
        )
        subscribe = f"${{{notifier_enabled} ? aws_sns_topic.severity : {{}}}}"
        LambdaPermission(
            self,
            "notifier_invoke",
            statement_id="AllowSnsInvoke-${each.key}",
            action="lambda:InvokeFunction",
            function_name=self.expr(ref(notifier, "function_name")),
            principal="sns.amazonaws.com",
            source_arn="${each.value.arn}",
        ).add_override("for_each", subscribe)
        SnsTopicSubscription(
            self,
            "notifier_subscription",
            topic_arn="${each.value.arn}",
            protocol="lambda",
            endpoint=self.expr(ref(notifier, "arn")),
            depends_on=[],
        ).add_override("for_each", subscribe)

        rules_enabled = "var.create && var.create_finding_rules"
        for rule_id, (severity, description, pattern) in FINDING_RULES.items():
            count = Token.as_number(f"${{{rules_enabled} ? 1 : 0}}")
            rule = CloudwatchEventRule(
                self,
                rule_id,
                count=count,
                name=f"${{var.name_prefix}}-{rule_id.replace('_', '-')}",
                description=description,
                event_pattern=self.expr(
                    event_pattern_expression(pattern, "var.high_severity_threshold")
                ),
                tags=self.tags(),
            )
            self.event_target(
                f"{rule_id}_target",
                rule=rule,
                arn=f'${{aws_sns_topic.severity["{severity}"].arn}}',
                target_id="severity-topic",
                count=count,
            )

        self._hub()

        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output(
            "topic_arns", "{for severity, topic in aws_sns_topic.severity : severity => topic.arn}"
        )
        self.output("email_topic_arn", f"try({ref(email_topic, 'arn')}, null)")
        self.output("notifier_function_arn", f"try({ref(notifier, 'arn')}, null)")
        self.output("notifier_dlq_arn", "try(aws_sqs_queue.notifier_dlq[0].arn, null)")
        self.output(
            "event_rule_arns",
            "{"
            + ", ".join(
                f'"{rule_id}" = try(aws_cloudwatch_event_rule.{rule_id}[0].arn, null)'
                for rule_id in FINDING_RULES
            )
            + "}",
        )

    def _hub(self) -> None:
        """Hub mode (an organisation-wide bus feeding the topics) and member mode (forward
        findings and reports to the hub's bus)."""
        hub_count = Token.as_number('${var.create && var.hub_organization_id != "" ? 1 : 0}')
        bus = CloudwatchEventBus(
            self,
            "hub",
            count=hub_count,
            name="${var.name_prefix}-hub",
            tags=self.tags(),
        )
        bus_arn = ref(bus, "arn")
        CloudwatchEventBusPolicy(
            self,
            "hub_policy",
            count=hub_count,
            event_bus_name=self.expr(ref(bus, "name")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [{'
                'Sid = "OrganisationMembersPutEvents", Effect = "Allow", Principal = "*", '
                f'Action = "events:PutEvents", Resource = {bus_arn}, '
                'Condition = {StringEquals = {"aws:PrincipalOrgID" = var.hub_organization_id}}'
                "}]})"
            ),
        )
        for rule_id, (severity, description, pattern) in {**FINDING_RULES, **REPORT_RULES}.items():
            rule = CloudwatchEventRule(
                self,
                f"hub_{rule_id}",
                count=hub_count,
                name=f"${{var.name_prefix}}-hub-{rule_id.replace('_', '-')}",
                description=f"{description} (hub bus)",
                event_bus_name=self.expr(ref(bus, "name")),
                event_pattern=self.expr(
                    event_pattern_expression(pattern, "var.high_severity_threshold")
                ),
                tags=self.tags(),
            )
            target = self.event_target(
                f"hub_{rule_id}_target",
                rule=rule,
                arn=f'${{aws_sns_topic.severity["{severity}"].arn}}',
                target_id="severity-topic",
                count=hub_count,
            )
            target.add_override("event_bus_name", self.expr(ref(bus, "name")))

        member_count = Token.as_number('${var.create && var.hub_event_bus_arn != "" ? 1 : 0}')
        forward = CloudwatchEventRule(
            self,
            "forward_to_hub",
            count=member_count,
            name="${var.name_prefix}-forward-to-hub",
            description="Findings and remediation reports forwarded to the organisation's hub",
            event_pattern=json.dumps(FORWARDED, sort_keys=True),
            tags=self.tags(),
        )
        role = self.role(
            "forward_to_hub_role", purpose="forward-to-hub", services=("events.amazonaws.com",),
            count=member_count,
        )  # fmt: skip
        IamRolePolicy(
            self,
            "forward_to_hub_policy",
            count=member_count,
            name="put-events-on-the-hub-bus",
            role=self.expr(ref(role, "id")),
            policy=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [{Sid = "PutOnTheHubBus", '
                'Effect = "Allow", Action = "events:PutEvents", '
                "Resource = var.hub_event_bus_arn}]})"
            ),
        )
        target = self.event_target(
            "forward_to_hub_target",
            rule=forward,
            arn="${var.hub_event_bus_arn}",
            target_id="hub-bus",
            count=member_count,
        )
        target.add_override("role_arn", self.expr(ref(role, "arn")))
        self.output("event_bus_arn", f"try({bus_arn}, null)")

    def _topic_policy(self, topic_arn: str) -> str:
        account = "data.aws_caller_identity.current.account_id"
        partition = "data.aws_partition.partition.partition"
        return (
            '{Version = "2012-10-17", Statement = ['
            '{Sid = "AccountManagesTopic", Effect = "Allow", '
            f'Principal = {{AWS = "arn:${{{partition}}}:iam::${{{account}}}:root"}}, '
            'Action = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", '
            '"sns:SetTopicAttributes", "sns:ListSubscriptionsByTopic"], '
            f"Resource = {topic_arn}}}, "
            '{Sid = "EventBridgeInThisAccountPublishes", Effect = "Allow", '
            'Principal = {Service = "events.amazonaws.com"}, Action = "sns:Publish", '
            f"Resource = {topic_arn}, "
            f'Condition = {{StringEquals = {{"aws:SourceAccount" = {account}}}}}}}, '
            '{Sid = "CloudWatchAlarmsInThisAccountPublish", Effect = "Allow", '
            'Principal = {Service = "cloudwatch.amazonaws.com"}, Action = "sns:Publish", '
            f"Resource = {topic_arn}, "
            f'Condition = {{StringEquals = {{"aws:SourceAccount" = {account}}}}}}}'
            "]}"
        )

    def alarm_topics(self) -> str:
        """The notifier's own alarms go to the high topic and, in case the notifier is what
        fails, straight to the e-mail topic too (CloudWatch writes readable e-mail)."""
        return (
            'concat([for s, topic in aws_sns_topic.severity : topic.arn if s == "high"], '
            "aws_sns_topic.email[*].arn)"
        )
