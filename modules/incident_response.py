"""Module ``incident_response``: Security Hub custom actions and what answers them.

One Security Hub custom action per playbook a responder may start from a finding, and one
EventBridge rule per action that this module answers:

- Disable Access Keys, Revoke Sessions -> the ``responder`` Lambda (this module);
- Send to Slack / E-mail / Workflow -> the notifications module's ``notifier``, with a
  routing key (channel and audience) wrapped around the event;
- Isolate Instance, Terminate Instance, Block IP -> no rule here: the module that does the
  work owns its rule (``forensics`` takes ``isolate_action_arn`` / ``terminate_action_arn``,
  ``waf_shield`` / ``nacl_blocklist`` take ``block_ip_action_arn``), so each action has
  exactly one rule whichever modules an account deploys.

Action ARNs are computed from the account, region and action id (what Security Hub
assigns), so they are known at plan and the consuming modules can count on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn import TerraformLocal, Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.securityhub_action_target import SecurityhubActionTarget

from bundle.inputs import Input, Rule, integer_between, one_of, regex
from bundle.module import REPORTING_INPUTS, ModuleStack, Output, ref

# Security Hub: a custom action's name is at most 20 characters, its id at most 20
# alphanumeric characters. https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_CreateActionTarget.html
ACTION_NAME_LIMIT = 20
ACTION_ID = r"^[A-Za-z0-9]{1,20}$"


@dataclass(frozen=True)
class Action:
    key: str  # Terraform address part and the `actions` input's value; never changes
    identifier: str  # Security Hub's custom action id (part of the ARN)
    name: str  # what the console's Actions menu shows
    description: str  # what the console shows beside it
    answered_by: str  # responder | notifier | forensics | blockers
    who: str  # who should be allowed to click it (README)
    channel: str = ""  # notifier routing channel (Send actions)

    def __post_init__(self) -> None:
        if len(self.name) > ACTION_NAME_LIMIT:
            raise ValueError(f"custom action name {self.name!r} is over 20 characters")
        if not regex(ACTION_ID, "").check(self.identifier):
            raise ValueError(f"custom action id {self.identifier!r} is not 1-20 alphanumerics")


ACTIONS = (
    Action(
        "isolate_instance",
        "IsolateInstance",
        "Isolate Instance",
        "Contain the EC2 instance of the finding and keep its evidence (forensics workflow: "
        "snapshots, memory, credentials revoked, network cut). The instance keeps running.",
        "forensics",
        "incident responders (on call)",
    ),
    Action(
        "terminate_instance",
        "TerminateInstance",
        "Terminate Instance",
        "Isolate the EC2 instance, keep its evidence, then terminate it once every volume "
        "has a completed snapshot. Volumes are kept.",
        "forensics",
        "incident leads only: it destroys the instance",
    ),
    Action(
        "disable_access_keys",
        "DisableAccessKeys",
        "Disable Access Keys",
        "Deactivate (never delete) the IAM access keys the finding names; a user named "
        "without a key: all its active keys; a role's temporary key: revoke its sessions.",
        "responder",
        "incident responders (on call)",
    ),
    Action(
        "revoke_sessions",
        "RevokeSessions",
        "Revoke Sessions",
        "Deny every session of the role the finding names issued before now (inline policy "
        "AWSRevokeOlderSessions, as the IAM console's Revoke active sessions).",
        "responder",
        "incident responders (on call)",
    ),
    Action(
        "block_ip",
        "BlockIp",
        "Block IP",
        "Block the finding's attacker addresses in the WAF IP sets and network ACLs, with "
        "expiry (never an allow-listed or private address).",
        "blockers",
        "incident responders and security analysts",
    ),
    Action(
        "send_to_chat",
        "SendToChat",
        "Send to Slack",
        "Post each selected finding to the incident chat channel, saying who sent it.",
        "notifier",
        "every security analyst",
        channel="chat",
    ),
    Action(
        "send_to_email",
        "SendToEmail",
        "Send to E-mail",
        "E-mail each selected finding to the security team's list, saying who sent it.",
        "notifier",
        "every security analyst",
        channel="email",
    ),
    Action(
        "send_to_workflow",
        "SendToWorkflow",
        "Send to Workflow",
        "Send each selected finding (ASFF JSON) to the security team's workflow endpoint "
        "(ticketing or SOAR).",
        "notifier",
        "every security analyst",
        channel="workflow",
    ),
)
ACTION_KEYS = tuple(a.key for a in ACTIONS)

# GuardDuty findings that mean an instance's (or a user's) credentials are in someone
# else's hands: answered without a click when create_automatic_responses is on.
# https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_finding-types-iam.html
DEFAULT_AUTOMATIC_TYPES = [
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS",
]
FINDING_TYPE_PREFIX = regex(
    r"^[A-Za-z]+:[A-Za-z0-9]+/[A-Za-z0-9.!&_-]*$",
    "Must be a GuardDuty finding type or type prefix, such as "
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.",
)
IAM_ARN = regex(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:(user|role)/.+$",
    "Must be an IAM user or role ARN (wildcards allowed), such as "
    "arn:aws:iam::111122223333:role/web-*.",
)
LAMBDA_ARN = Rule(
    '{v} == "" || can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]+$", {v}))',
    "Must be empty or a Lambda function ARN (the notifications module's notifier_function_arn).",
    lambda v: (
        v == ""
        or regex(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]+$", "").check(
            v
        )
    ),
)
AUDIENCE = regex(r"^[^\"\\\\]{0,100}$", "Must be at most 100 characters, without quotes.")


class IncidentResponseModule(ModuleStack):
    name = "incident_response"
    title = "Incident response: Security Hub custom actions, key and session revocation"
    summary = (
        "Security Hub custom actions a responder starts from a finding (Isolate Instance, "
        "Terminate Instance, Disable Access Keys, Revoke Sessions, Block IP, Send to Slack, "
        "Send to E-mail, Send to Workflow; each can be turned off), one EventBridge rule per "
        "action this module answers, and the `responder` Lambda: it deactivates (never "
        "deletes) the access keys a finding names, revokes a role's older sessions (the "
        "console's AWSRevokeOlderSessions policy), adds a note and sets the finding's "
        "workflow to NOTIFIED in Security Hub, and reports. Send actions go to the "
        "notifier with a routing key. Isolate / Terminate / Block IP are answered by the "
        "forensics and blocking modules, which take this module's action ARNs. Optional "
        "automatic responses (off by default) answer GuardDuty credential findings "
        "without a click."
    )
    function = "responder"
    limits = (
        "Security Hub allows 50 custom actions per account and region; a name has at most "
        "20 characters and an id at most 20 alphanumerics (the module's fit).",
        "Custom actions exist in the region where they are created: with cross-region "
        "aggregation, deploy the module in the aggregation region (findings of linked "
        "regions are acted on there).",
        "Security Hub must be enabled in the account and region before the action targets "
        "can be created (the module does not enable it; `create_action_targets = false` "
        "applies the rest).",
        "IAM has no conditional write: two revocations of one role at the same moment may "
        "leave the earlier cut-off (seconds apart); the next revocation moves it forward.",
        "BatchUpdateFindings takes a note of at most 512 characters: longer notes are cut "
        "(the report carries everything).",
        "A key the responder deactivated is turned back on by the next `terraform apply` of a "
        "configuration that manages it as Active (aws_iam_access_key status): set it to "
        "Inactive there, or remove the key.",
    )
    inputs = (
        Input(
            "actions",
            "list(string)",
            "Custom actions to offer (each one can be turned off by leaving it out): "
            + ", ".join(ACTION_KEYS)
            + ". The Send actions need notifier_function_arn.",
            default=list(ACTION_KEYS),
            each=(one_of(ACTION_KEYS),),
        ),
        Input(
            "create_action_targets",
            "bool",
            "Whether to create the Security Hub action targets. False when Security Hub is "
            "not enabled yet or the targets are managed elsewhere with the same ids: the "
            "rules and ARNs stay the same. See "
            "https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-cwe-custom-actions.html.",
            default=True,
        ),
        Input(
            "notifier_function_arn",
            "string",
            "ARN of the notifications module's notifier (its `notifier_function_arn` "
            "output), which the Send actions invoke. Required when actions lists a Send action.",
            default="",
            rules=(LAMBDA_ARN,),
            region_bound="arns",
        ),
        Input(
            "chat_channel",
            "string",
            "Chat channel of the Send to Slack action: slack or teams (the notifier's "
            "webhook secret key). With teams, the action is named Send to Teams.",
            default="slack",
            rules=(one_of(["slack", "teams"]),),
        ),
        Input(
            "chat_audience",
            "string",
            "Who the chat Send action reaches, shown in each message (e.g. #incident-response).",
            default="incident channel",
            rules=(AUDIENCE,),
        ),
        Input(
            "email_audience",
            "string",
            "Who the e-mail Send action reaches, shown in each message.",
            default="security team",
            rules=(AUDIENCE,),
        ),
        Input(
            "workflow_audience",
            "string",
            "Who the workflow Send action reaches (the endpoint is the webhook secret's "
            "`workflow` key), shown in each payload.",
            default="security workflow",
            rules=(AUDIENCE,),
        ),
        Input(
            "dry_run_enabled",
            "bool",
            "Whether the responder only says what it would do (no key deactivated, no "
            "session revoked, no finding updated). For trying the actions out.",
            default=False,
        ),
        Input(
            "create_automatic_responses",
            "bool",
            "Whether GuardDuty findings of automatic_response_finding_types are answered "
            "without a click (a role's sessions revoked, a user's key deactivated). Off by "
            "default: revoking sessions interrupts the workload using the role.",
            default=False,
        ),
        Input(
            "automatic_response_finding_types",
            "list(string)",
            "GuardDuty finding types (or prefixes) answered automatically when "
            "create_automatic_responses is on.",
            default=DEFAULT_AUTOMATIC_TYPES,
            each=(FINDING_TYPE_PREFIX,),
        ),
        Input(
            "user_arns",
            "list(string)",
            "IAM users whose keys the responder may deactivate (wildcards allowed). Empty "
            "allows every user of the account.",
            default=[],
            each=(IAM_ARN,),
        ),
        Input(
            "role_arns",
            "list(string)",
            "IAM roles whose sessions the responder may revoke (wildcards allowed). Empty "
            "allows every role of the account: narrow it where you can.",
            default=[],
            each=(IAM_ARN,),
        ),
        Input(
            "kms_deletion_window_days",
            "number",
            "Waiting period before the module's KMS key is deleted after destroy (7-30).",
            default=30,
            rules=(integer_between(7, 30),),
        ),
        *REPORTING_INPUTS,
    )
    outputs = (
        Output(
            "action_arns",
            "Map of action (isolate_instance, ..., send_to_workflow) to its Security Hub "
            "custom action ARN; only the actions offered.",
        ),
        Output(
            "isolate_action_arn",
            "ARN of the Isolate Instance action (pass to forensics' isolate_action_arn), or null.",
        ),
        Output(
            "terminate_action_arn",
            "ARN of the Terminate Instance action (forensics' terminate_action_arn), or null.",
        ),
        Output(
            "block_ip_action_arn",
            "ARN of the Block IP action (waf_shield / nacl_blocklist block_ip_action_arn), or null.",
        ),
        Output("responder_function_arn", "ARN of the responder Lambda."),
        Output("event_rule_arns", "Map of action (or automatic) to the EventBridge rule ARN."),
        Output("kms_key_arn", "ARN of the module's KMS key (logs, queues, environment)."),
    )

    def build(self) -> None:
        key = self.module_key(
            "Playbook as Code incident_response: responder logs, queues and environment",
            Token.as_number("${var.kms_deletion_window_days}"),
        )
        key_arn = self.expr(ref(key, "arn"))
        account, partition, region = self.account_id, self.arn_partition, self.region_name
        hub = f"arn:{partition}:securityhub:{region}:{account}"
        catalog = {
            a.key: {
                "identifier": a.identifier,
                "name": a.name,
                "description": a.description,
                "arn": f"{hub}:action/custom/{a.identifier}",
            }
            for a in ACTIONS
        }
        catalog["send_to_chat"]["name"] = (
            '${var.chat_channel == "teams" ? "Send to Teams" : "Send to Slack"}'
        )
        TerraformLocal(self, "catalog", catalog)
        # An action is offered when listed. The keys must be known at plan (they count the
        # targets and rules), so they depend on variables only, never on an ARN that another
        # module in the same stack creates; the Send actions' need for a notifier is a
        # precondition instead.
        TerraformLocal(
            self,
            "offered",
            "${{for key, action in local.catalog : key => action if var.create && "
            "contains(var.actions, key)}}",
        )

        optional_arn = '{0} == "" ? [] : [{0}]'
        responder = self.remediator(
            count_expression="var.create ? 1 : 0",
            kms_key_arn=key_arn,
            resources={
                "users": "length(var.user_arns) > 0 ? [for a in var.user_arns : a if "
                'can(regex(":user/", a))] : ["arn:' + partition + ":iam::" + account + ':user/*"]',
                "roles": "length(var.role_arns) > 0 ? [for a in var.role_arns : a if "
                'can(regex(":role/", a))] : ["arn:' + partition + ":iam::" + account + ':role/*"]',
                "hub": f'["{hub}:hub/default"]',
                "notify_topic": optional_arn.format("var.notify_topic_arn"),
                "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
            },
            environment={
                "DISABLE_ACCESS_KEYS_ACTION_ARN": '${try(local.offered.disable_access_keys.arn, "")}',
                "REVOKE_SESSIONS_ACTION_ARN": '${try(local.offered.revoke_sessions.arn, "")}',
                "AUTOMATIC_FINDING_TYPES": "${var.create_automatic_responses ? "
                'jsonencode(var.automatic_response_finding_types) : "[]"}',
                "DRY_RUN": "${var.dry_run_enabled}",
                "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
            },
            preconditions=[
                {
                    "condition": '${var.notifier_function_arn != "" || length([for a in '
                    'var.actions : a if startswith(a, "send_")]) == 0}',
                    "error_message": "The Send actions (send_to_chat, send_to_email, "
                    "send_to_workflow) need notifier_function_arn (the notifications module's "
                    "notifier_function_arn output): set it, or leave them out of actions.",
                }
            ],
        )
        responder_arn = self.expr(ref(responder, "arn"))

        audiences = {
            "send_to_chat": ("var.chat_channel", "var.chat_audience"),
            "send_to_email": ('"email"', "var.email_audience"),
            "send_to_workflow": ('"workflow"', "var.workflow_audience"),
        }
        for action in ACTIONS:
            # local.offered is empty without var.create; saying so keeps the guard visible.
            offered = f'var.create && contains(keys(local.offered), "{action.key}")'
            SecurityhubActionTarget(
                self,
                action.key,
                count=Token.as_number(f"${{var.create_action_targets && {offered} ? 1 : 0}}"),
                identifier=action.identifier,
                name=f"${{local.catalog.{action.key}.name}}"
                if action.key == "send_to_chat"
                else action.name,
                description=action.description,
            )
            if action.answered_by not in ("responder", "notifier"):
                continue
            count = Token.as_number(f"${{{offered} ? 1 : 0}}")
            rule = CloudwatchEventRule(
                self,
                f"{action.key}_rule",
                count=count,
                name=f"${{var.name_prefix}}-action-{action.key.replace('_', '-')}",
                description=f"Security Hub custom action {action.name} -> {action.answered_by}",
                event_pattern=self.expr(
                    'jsonencode({source = ["aws.securityhub"], '
                    '"detail-type" = ["Security Hub Findings - Custom Action"], '
                    f"resources = [local.catalog.{action.key}.arn]}})"
                ),
                tags=self.tags(),
            )
            if action.answered_by == "responder":
                self._invoke(action.key, rule, responder_arn, count, "responder")
                continue
            channel, audience = audiences[action.key]
            target = self._invoke(
                action.key, rule, "${var.notifier_function_arn}", count, "notifier"
            )
            # The notifier learns where to send from a routing key wrapped around the event.
            target.add_override(
                "input_transformer",
                {
                    "input_template": '{"route": ${jsonencode({channel = '
                    + channel
                    + ", audience = "
                    + audience
                    + '})}, "event": <aws.events.event.json>}'
                },
            )

        automatic_count = Token.as_number("${var.create && var.create_automatic_responses ? 1 : 0}")
        automatic = CloudwatchEventRule(
            self,
            "automatic_rule",
            count=automatic_count,
            name="${var.name_prefix}-automatic-credential-response",
            description="GuardDuty credential findings answered without a click",
            event_pattern=self.expr(
                'jsonencode({source = ["aws.guardduty"], "detail-type" = ["GuardDuty Finding"], '
                "detail = {type = [for t in var.automatic_response_finding_types : "
                "{prefix = t}]}})"
            ),
            tags=self.tags(),
        )
        self._invoke("automatic", automatic, responder_arn, automatic_count, "responder")

        self.output("action_arns", "{for key, action in local.offered : key => action.arn}")
        for name in ("isolate_instance", "terminate_instance", "block_ip"):
            output = name.replace("_instance", "") + "_action_arn"
            self.output(output, f"try(local.offered.{name}.arn, null)")
        self.output("responder_function_arn", f"try({ref(responder, 'arn')}, null)")
        rules = [a.key for a in ACTIONS if a.answered_by in ("responder", "notifier")]
        self.output(
            "event_rule_arns",
            "{"
            + ", ".join(
                f"{k} = try(aws_cloudwatch_event_rule.{k}_rule[0].arn, null)" for k in rules
            )
            + ", automatic = try(aws_cloudwatch_event_rule.automatic_rule[0].arn, null)}",
        )
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")

    @classmethod
    def readme_sections(cls) -> list[str]:
        """The custom actions: who may click each, what answers it, with which permissions
        (from the responder's and the notifier's declared permissions)."""
        from functions.notifier.permissions import PERMISSIONS as NOTIFIER
        from functions.responder.permissions import ACTION_PERMISSIONS

        answered = {
            "forensics": "the `forensics` module's workflow (pass `isolate_action_arn` / "
            "`terminate_action_arn`); permissions: its README",
            "blockers": "the `waf_shield` and `nacl_blocklist` remediators (pass "
            "`block_ip_action_arn`); permissions: their READMEs",
        }
        notifier = ", ".join(f"`{p.action}`" for p in NOTIFIER)
        lines = [
            "",
            "## Custom actions",
            "",
            "Every action's work is done with the answering Lambda's role, never the "
            "clicker's: clicking only sends the selected findings to EventBridge. Who may "
            "click is who may use Security Hub's custom actions in the account, so keep "
            "the destructive ones for the people listed (or try them with "
            "`dry_run_enabled`).",
            "",
            "| Action (id) | Who should click it | Answered by | IAM permissions it needs |",
            "|-------------|---------------------|-------------|--------------------------|",
        ]
        for action in ACTIONS:
            if action.answered_by == "responder":
                by = "the `responder` Lambda of this module"
                needs = ", ".join(f"`{a}`" for a in dict.fromkeys(ACTION_PERMISSIONS[action.key]))
            elif action.answered_by == "notifier":
                channel = "`chat_channel`" if action.channel == "chat" else f"`{action.channel}`"
                by = f"the notifications module's `notifier` (routing channel {channel})"
                needs = (
                    f"{notifier}; and `lambda:InvokeFunction` for EventBridge (a resource "
                    "policy this module adds)"
                )
            else:
                by, needs = answered[action.answered_by].split("; permissions: ")
                needs = "see " + needs
            lines.append(
                f"| {action.name} (`{action.identifier}`) | {action.who} | {by} | {needs} |"
            )
        return lines

    def _invoke(
        self, key: str, rule: CloudwatchEventRule, function_arn: str, count: float, target: str
    ) -> CloudwatchEventTarget:
        LambdaPermission(
            self,
            f"{key}_invoke",
            count=count,
            statement_id=f"${{var.name_prefix}}-incident-response-{key.replace('_', '-')}",
            action="lambda:InvokeFunction",
            function_name=function_arn,
            principal="events.amazonaws.com",
            source_arn=self.expr(ref(rule, "arn")),
        )
        return self.event_target(
            f"{key}_target", rule=rule, arn=function_arn, target_id=target, count=count
        )
