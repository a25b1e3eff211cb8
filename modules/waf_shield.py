"""Module ``waf_shield``: the edge. A WAFv2 web ACL with rate-based rules, AWS managed
rule groups, an allowlist and IPv4/IPv6 blocklists, logging, associations and optional
Shield Advanced; and the ``waf_blocker`` remediator that fills the blocklists from
GuardDuty findings and expires what it added.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cdktn import Token
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.cloudwatch_log_resource_policy import CloudwatchLogResourcePolicy
from cdktn_provider_aws.shield_application_layer_automatic_response import (
    ShieldApplicationLayerAutomaticResponse,
)
from cdktn_provider_aws.shield_protection import ShieldProtection
from cdktn_provider_aws.shield_protection_group import ShieldProtectionGroup
from cdktn_provider_aws.wafv2_ip_set import Wafv2IpSet
from cdktn_provider_aws.wafv2_web_acl import (
    Wafv2WebAcl,
    Wafv2WebAclDefaultAction,
    Wafv2WebAclDefaultActionAllow,
    Wafv2WebAclVisibilityConfig,
)
from cdktn_provider_aws.wafv2_web_acl_association import Wafv2WebAclAssociation
from cdktn_provider_aws.wafv2_web_acl_logging_configuration import (
    Wafv2WebAclLoggingConfiguration,
)

from bundle.inputs import (
    ARN,
    Attribute,
    Input,
    Rule,
    Shape,
    integer_between,
    one_of,
)
from bundle.module import ModuleStack, Output, ref, splat
from functions.common.finding_catalog import Role
from modules.blocking import QUEUE_PERMISSIONS, blocking_inputs, blocking_remediator

RATE_WINDOWS = (60, 120, 300, 600)
REDACTABLE = ("single_header", "uri_path", "query_string", "method")

RATE_RULE = Shape(
    "rate_rule",
    (
        Attribute("name", "string"),
        Attribute("limit", "number"),
        Attribute("window", "number", 300),
        Attribute("aggregate", "string", "IP"),
        Attribute("forwarded_ip_header", "string", "X-Forwarded-For"),
        Attribute("uri_path_prefix", "string", ""),
        Attribute("country_codes", "list(string)", []),
        Attribute("action", "string", "block"),
    ),
)
MANAGED_RULE_GROUP = Shape(
    "managed_rule_group",
    (
        Attribute("name", "string"),
        Attribute("vendor", "string", "AWS"),
        Attribute("version", "string", ""),
        Attribute("rule_overrides_to_count", "list(string)", []),
    ),
)
REDACTED_FIELD = Shape(
    "redacted_field",
    (Attribute("type", "string"), Attribute("name", "string", "")),
)


def _object_rule(condition: str, message: str, check: Any) -> Rule:
    return Rule(condition=condition, message=message, check=check)


RATE_RULE_CHECKS = (
    _object_rule(
        'can(regex("^[A-Za-z0-9_-]{1,100}$", {v}.name))',
        "Rate rule names must be 1-100 letters, digits, hyphens or underscores.",
        lambda r: bool(re.fullmatch(r"[A-Za-z0-9_-]{1,100}", r["name"])),
    ),
    _object_rule(
        "{v}.limit >= 10 && {v}.limit <= 2000000000 && floor({v}.limit) == {v}.limit",
        "Rate rule limits must be whole numbers from 10 to 2,000,000,000 requests per window.",
        lambda r: float(r["limit"]).is_integer() and 10 <= r["limit"] <= 2_000_000_000,
    ),
    _object_rule(
        "contains([60, 120, 300, 600], {v}.window)",
        "Rate rule windows must be 60, 120, 300 or 600 seconds.",
        lambda r: r["window"] in RATE_WINDOWS,
    ),
    _object_rule(
        'contains(["IP", "FORWARDED_IP"], {v}.aggregate)',
        "Rate rules aggregate by IP or FORWARDED_IP.",
        lambda r: r["aggregate"] in ("IP", "FORWARDED_IP"),
    ),
    _object_rule(
        'contains(["block", "count"], {v}.action)',
        "Rate rule actions are block or count.",
        lambda r: r["action"] in ("block", "count"),
    ),
    _object_rule(
        '{v}.uri_path_prefix == "" || length({v}.country_codes) == 0',
        "A rate rule scopes down by uri_path_prefix or by country_codes, not both.",
        lambda r: not (r["uri_path_prefix"] and r["country_codes"]),
    ),
    _object_rule(
        'alltrue([for c in {v}.country_codes : can(regex("^[A-Z]{2}$", c))])',
        "Country codes are ISO 3166 alpha-2, such as US or DE.",
        lambda r: all(
            isinstance(c, str) and len(c) == 2 and c.isalpha() and c.isupper()
            for c in r["country_codes"]
        ),
    ),
)
# Names of the rules the module writes itself: a rate rule may not take one.
OWN_RULE_NAMES = ("allowlist-ipv4", "allowlist-ipv6", "blocklist-ipv4", "blocklist-ipv6")
RATE_RULE_CHECKS += (
    _object_rule(
        "!contains(" + json.dumps(list(OWN_RULE_NAMES)) + ", {v}.name)",
        "Rate rule names must differ from the module's own rules: "
        + ", ".join(OWN_RULE_NAMES)
        + ".",
        lambda r: r["name"] not in OWN_RULE_NAMES,
    ),
    _object_rule(
        '{v}.uri_path_prefix == "" || can(regex("^/[!-~]{0,199}$", {v}.uri_path_prefix))',
        "A rate rule's uri_path_prefix must start with / and hold printable ASCII without "
        "spaces (200 characters at most).",
        lambda r: (
            r["uri_path_prefix"] == "" or bool(re.fullmatch(r"/[!-~]{0,199}", r["uri_path_prefix"]))
        ),
    ),
)
# The keys of resource maps name Shield protections (128 characters with the prefix).
RESOURCE_KEYS = Rule(
    condition='alltrue([for k in keys({v}) : can(regex("^[A-Za-z0-9_.-]{1,64}$", k))])',
    message="Resource names (the map keys) must be 1-64 letters, digits, dots, hyphens or "
    "underscores.",
    check=lambda value: all(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", k) for k in value),
)
# WAF applies these to the URI path before a login rule compares it, in this order, so
# /Login, //login, /./login and /%6Cogin all meet a rule for /login. See
# https://docs.aws.amazon.com/waf/latest/developerguide/waf-rule-statement-transformation.html.
PATH_TRANSFORMATIONS = ("URL_DECODE", "NORMALIZE_PATH", "LOWERCASE")

UNIQUE_NAMES = Rule(
    condition="length(distinct([for r in {v} : r.name])) == length({v})",
    message="Each rule must have its own name.",
    check=lambda rules: len({r.name for r in rules}) == len(rules),
)


class WafShieldModule(ModuleStack):
    name = "waf_shield"
    title = "WAF and Shield: rate limits, managed rules, blocklists that expire"
    summary = (
        "A WAFv2 web ACL (REGIONAL or CLOUDFRONT) with an allowlist at the highest priority, "
        "IPv4 and IPv6 blocklists, rate-based rules and AWS managed rule groups from "
        "variables, logging to a KMS-encrypted `aws-waf-logs-*` log group with redacted "
        "fields, associations with regional resources and optional Shield Advanced "
        "protections. The paired `waf_blocker` Lambda adds the addresses GuardDuty findings "
        "accuse to the blocklists (never an allow-listed or non-global one), records them in "
        "DynamoDB with an expiry, and a scheduled sweep removes expired addresses and "
        "reconciles the sets with the table. Every action is reported to the notifications "
        "topic."
    )
    function = "waf_blocker"
    service_permissions = QUEUE_PERMISSIONS
    limits = (
        "WAF allows 10,000 addresses per IP set: `max_addresses_per_set` caps the "
        "blocklists, evicting the block that expires first.",
        "WAF rule names must differ within a web ACL: rate rules cannot take the module's "
        "own rule names (validated) or a managed group's `<vendor>-<name>` (checked at plan).",
        "Shield Advanced protection names are at most 128 characters: protections are named "
        "`<name_prefix>-<name>` with names of at most 64 characters (validated).",
        "Shield protection group ids are account-wide and at most 36 characters: "
        "`<name_prefix>-<region>`, checked at plan.",
        "Shield automatic application-layer mitigation works on CloudFront distributions and "
        "ALBs that use this web ACL: with REGIONAL scope a mitigated name must be associated "
        "(checked at plan), and the mitigation is created after the association.",
        "for_each keys must be known at plan: resources are given as maps from a static name "
        "to the ARN, so ARNs created in the same apply work.",
        "Sampled requests show every header, redacted or not (redaction applies to logs): "
        "`sampled_requests_enabled` is off unless set.",
        "GuardDuty re-publishes an ongoing finding at the detector's publishing frequency "
        "(six hours by default): the default block lasts twice that.",
    )
    inputs = (
        Input(
            "scope",
            "string",
            "REGIONAL (ALB, API Gateway, AppSync, Cognito, App Runner, Verified Access) or "
            "CLOUDFRONT. CLOUDFRONT must be applied with a provider in us-east-1. See "
            "https://docs.aws.amazon.com/waf/latest/developerguide/how-aws-waf-works-resources.html.",
            default="REGIONAL",
            rules=(one_of(("REGIONAL", "CLOUDFRONT")),),
        ),
        Input(
            "rate_rules",
            "",
            "Rate-based rules, evaluated in list order after the allow and block lists: "
            "`name`, `limit` (requests per window and key, 10-2,000,000,000), `window` (60, "
            "120, 300 or 600 s), `aggregate` (IP or FORWARDED_IP with "
            "`forwarded_ip_header`), an optional scope-down by `uri_path_prefix` or "
            "`country_codes` (the path is URL-decoded, normalised and lowercased before it "
            "is compared, so `/Login` or `//login` cannot skip a rule for `/login`), and "
            "`action` (block or count). See "
            "https://docs.aws.amazon.com/waf/latest/developerguide/waf-rule-statement-type-rate-based.html.",
            default=[{"name": "rate-per-ip", "limit": 2000}],
            element=RATE_RULE,
            each=RATE_RULE_CHECKS,
            rules=(UNIQUE_NAMES,),
        ),
        Input(
            "managed_rule_groups",
            "",
            "AWS Managed Rules groups, evaluated in list order after the rate rules: `name`, "
            "`vendor` (AWS), an optional pinned `version`, and `rule_overrides_to_count` "
            "(rules of the group that only count). See "
            "https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-list.html.",
            default=[
                {"name": "AWSManagedRulesAmazonIpReputationList"},
                {"name": "AWSManagedRulesCommonRuleSet"},
                {"name": "AWSManagedRulesKnownBadInputsRuleSet"},
            ],
            element=MANAGED_RULE_GROUP,
            rules=(UNIQUE_NAMES,),
            each=(
                _object_rule(
                    'can(regex("^[A-Za-z0-9_-]{1,128}$", {v}.name))',
                    "Managed rule group names are 1-128 letters, digits, hyphens or underscores.",
                    lambda g: bool(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", g["name"])),
                ),
            ),
        ),
        Input(
            "redacted_fields",
            "",
            "Request fields WAF leaves out of its logs: `type` single_header (with `name`), "
            "uri_path, query_string or method. Headers that carry credentials belong here. "
            "Redaction applies to logs only: sampled requests (sampled_requests_enabled) show "
            "every header, which is why sampling is off by default.",
            default=[
                {"type": "single_header", "name": "authorization"},
                {"type": "single_header", "name": "cookie"},
            ],
            element=REDACTED_FIELD,
            each=(
                _object_rule(
                    'contains(["single_header", "uri_path", "query_string", "method"], {v}.type)'
                    ' && ({v}.type != "single_header" || {v}.name != "")',
                    "Redacted fields are single_header (with a name), uri_path, query_string "
                    "or method.",
                    lambda f: (
                        f["type"] in REDACTABLE
                        and (f["type"] != "single_header" or bool(f["name"]))
                    ),
                ),
            ),
        ),
        Input(
            "associated_resource_arns",
            "map(string)",
            "Regional resources the web ACL protects (ALB, API Gateway stage, AppSync, "
            "Cognito, App Runner, Verified Access), as a map from a short name you choose to "
            "the resource ARN: `{web = aws_lb.web.arn}`. The names are the Terraform keys, so "
            "ARNs of resources created in the same apply (unknown at plan) work. CloudFront "
            "distributions reference the web ACL from their own configuration.",
            default={},
            each=(ARN,),
            rules=(RESOURCE_KEYS,),
            region_bound="arns",
        ),
        Input(
            "create_shield_protections",
            "bool",
            "Whether to create Shield Advanced protections (needs an active Shield Advanced "
            "subscription, which costs money: off by default).",
            default=False,
        ),
        Input(
            "shield_resource_arns",
            "map(string)",
            "Resources Shield Advanced protects and groups (CloudFront distributions, ALBs, "
            "Elastic IPs, Global Accelerators, Route 53 hosted zones), as a map from a short "
            "name (it names the protection `<name_prefix>-<name>`) to the ARN.",
            default={},
            each=(ARN,),
            rules=(RESOURCE_KEYS,),
        ),
        Input(
            "shield_automatic_mitigation",
            "map(string)",
            "Shield Advanced automatic application-layer DDoS mitigation: a map from names in "
            "shield_resource_arns to `block` or `count`. Only CloudFront distributions and "
            "ALBs qualify, and Shield requires this web ACL on the resource: with REGIONAL "
            "scope each name must also be in associated_resource_arns (checked at plan); a "
            "CloudFront distribution must name this web ACL itself. See "
            "https://docs.aws.amazon.com/waf/latest/developerguide/ddos-automatic-app-layer-response.html.",
            default={},
            each=(one_of(("block", "count")),),
        ),
        Input(
            "sampled_requests_enabled",
            "bool",
            "Whether WAF keeps samples of the requests each rule matched (console, "
            "GetSampledRequests). Samples show every header, including those in "
            "redacted_fields, which only apply to logs: off by default so credentials never "
            "appear there. See "
            "https://docs.aws.amazon.com/waf/latest/developerguide/web-acl-testing-view-sample.html.",
            default=False,
        ),
        Input(
            "allowlist_bypass_enabled",
            "bool",
            "Whether allow-listed addresses skip every rule of the web ACL (an Allow rule at "
            "priority 0). Off by default: they are exempt from the blocklists only, and still "
            "meet the rate rules and managed rule groups, so a trusted partner whose host is "
            "compromised cannot inject SQL or flood the site.",
            default=False,
        ),
        Input(
            "max_addresses_per_set",
            "number",
            "Cap on addresses per blocklist IP set (WAF allows 10,000); when a block would "
            "exceed it the addresses expiring first are evicted, and the report says so.",
            default=10000,
            rules=(integer_between(1, 10000),),
        ),
    )
    inputs += blocking_inputs(
        "the remediator refuses to block them and the blocklist rules exempt them (see "
        "allowlist_bypass_enabled)"
    )
    outputs = (
        Output(
            "web_acl_arn", "ARN of the web ACL (for CloudFront: the distribution's web_acl_id)."
        ),
        Output("web_acl_id", "ID of the web ACL."),
        Output(
            "blocklist_ipv4_ip_set_arn", "ARN of the IPv4 blocklist IP set the remediator manages."
        ),
        Output(
            "blocklist_ipv6_ip_set_arn", "ARN of the IPv6 blocklist IP set the remediator manages."
        ),
        Output("allowlist_ip_set_arns", "ARNs of the IPv4 and IPv6 allowlist IP sets."),
        Output("log_group_arn", "ARN of the WAF log group."),
        Output("kms_key_arn", "ARN of the module's KMS key (logs, state table, DLQ)."),
        Output("state_table_name", "Name of the DynamoDB table of blocked addresses."),
        Output("waf_blocker_function_arn", "ARN of the waf_blocker Lambda function."),
        Output("waf_blocker_dlq_arn", "ARN of the waf_blocker dead-letter queue."),
        Output(
            "shield_protection_ids",
            "Map of the names in shield_resource_arns to Shield Advanced protection IDs.",
        ),
    )

    def build(self) -> None:
        key = self.module_key("Playbook as Code waf_shield: WAF logs, state table, DLQ", 30)
        key_arn = self.expr(ref(key, "arn"))

        sets = {}
        for purpose in ("allow", "block"):
            for version in (4, 6):
                cidrs = (
                    f"[for c in var.allowlist_cidrs : c if {'' if version == 6 else '!'}"
                    'strcontains(c, ":")]'
                )
                ip_set = Wafv2IpSet(
                    self,
                    f"{purpose}_ipv{version}",
                    count=self.count,
                    name=f"${{var.name_prefix}}-{purpose}list-ipv{version}",
                    description=(
                        "Never blocked (from allowlist_cidrs)"
                        if purpose == "allow"
                        else "Managed by the waf_blocker remediator"
                    ),
                    scope="${var.scope}",
                    ip_address_version=f"IPV{version}",
                    addresses=Token.as_list(self.expr(cidrs)) if purpose == "allow" else [],
                    tags=self.tags(),
                )
                if purpose == "block":
                    # The remediator owns the contents; Terraform must not undo its blocks.
                    ip_set.add_override("lifecycle.ignore_changes", ["addresses"])
                sets[(purpose, version)] = ip_set

        acl = Wafv2WebAcl(
            self,
            "web_acl",
            count=self.count,
            name="${var.name_prefix}-web-acl",
            description="Playbook as Code: allowlist, blocklists, rate rules, managed rules",
            scope="${var.scope}",
            default_action=Wafv2WebAclDefaultAction(allow=Wafv2WebAclDefaultActionAllow()),
            visibility_config=_visibility("${var.name_prefix}-web-acl"),
            tags=self.tags(),
        )
        # Rule statements nest arbitrarily deep and the bindings type them as Any, so the
        # rules are written as plain blocks; rate rules and managed groups are dynamic
        # blocks over their variables so one module serves every account.
        acl.add_override(
            "rule",
            [
                _blocklist_rule(
                    version, 2 + index, sets[("block", version)], sets[("allow", version)]
                )
                for index, version in enumerate((4, 6))
            ],
        )
        acl.add_override(
            "dynamic.rule",
            [_allowlist_bypass_rules(sets), _rate_rules(), _managed_rule_groups()],
        )
        shield_on = "var.create_shield_protections"
        mitigated = "keys(var.shield_automatic_mitigation)"
        acl.add_override(
            "lifecycle.precondition",
            [
                {
                    "condition": '${var.scope == "REGIONAL" || data.aws_region.region.id == "us-east-1"}',
                    "error_message": "A CLOUDFRONT web ACL must be created with a provider in us-east-1.",
                },
                {
                    "condition": '${var.scope == "REGIONAL" || length(var.associated_resource_arns) == 0}',
                    "error_message": "CloudFront distributions attach a web ACL themselves; "
                    "associated_resource_arns is for REGIONAL web ACLs.",
                },
                {
                    "condition": "${length(setintersection(toset([for r in var.rate_rules : r.name]), "
                    'toset([for g in var.managed_rule_groups : "${g.vendor}-${g.name}"]))) == 0}',
                    "error_message": "A rate rule is named like a managed rule group's rule "
                    "(<vendor>-<name>); WAF needs every rule name of a web ACL to differ.",
                },
                {
                    "condition": f"${{!{shield_on} || alltrue([for k in {mitigated} : "
                    "contains(keys(var.shield_resource_arns), k)])}",
                    "error_message": "Every name in shield_automatic_mitigation must be a name "
                    "in shield_resource_arns: Shield mitigates only protected resources.",
                },
                {
                    "condition": f'${{!{shield_on} || var.scope != "REGIONAL" || alltrue([for k in '
                    f"{mitigated} : contains(keys(var.associated_resource_arns), k)])}}",
                    "error_message": "Every name in shield_automatic_mitigation must also be "
                    "in associated_resource_arns: Shield's automatic mitigation writes its "
                    "rules into the web ACL of the resource, so the resource must use this one.",
                },
            ],
        )

        log_group = CloudwatchLogGroup(
            self,
            "waf_logs",
            count=self.count,
            # WAF logs only to log groups whose name starts with aws-waf-logs-.
            name="aws-waf-logs-${var.name_prefix}",
            retention_in_days=Token.as_number("${var.log_retention_days}"),
            kms_key_id=key_arn,
            tags=self.tags(),
        )
        CloudwatchLogResourcePolicy(
            self,
            "waf_logs_delivery",
            count=self.count,
            policy_name="${var.name_prefix}-waf-log-delivery",
            policy_document=self.expr(
                'jsonencode({Version = "2012-10-17", Statement = [{Sid = "WafLogDelivery", '
                'Effect = "Allow", Principal = {Service = "delivery.logs.amazonaws.com"}, '
                'Action = ["logs:CreateLogStream", "logs:PutLogEvents"], '
                f'Resource = ["${{{ref(log_group, "arn")}}}:*"], '
                'Condition = {StringEquals = {"aws:SourceAccount" = '
                'data.aws_caller_identity.current.account_id}, ArnLike = {"aws:SourceArn" = '
                f'"arn:${{data.aws_partition.partition.partition}}:logs:${{data.aws_region.region.id}}:'
                '${data.aws_caller_identity.current.account_id}:*"}}}]})'
            ),
        )
        logging = Wafv2WebAclLoggingConfiguration(
            self,
            "web_acl_logging",
            count=self.count,
            resource_arn=self.expr(ref(acl, "arn")),
            log_destination_configs=[self.expr(ref(log_group, "arn"))],
        )
        logging.add_override(
            "dynamic.redacted_fields",
            {
                "for_each": "${var.redacted_fields}",
                "content": {
                    "dynamic": {
                        "single_header": {
                            "for_each": '${redacted_fields.value.type == "single_header" ? [redacted_fields.value.name] : []}',
                            "content": {"name": "${single_header.value}"},
                        },
                        "uri_path": _flag('redacted_fields.value.type == "uri_path"'),
                        "query_string": _flag('redacted_fields.value.type == "query_string"'),
                        "method": _flag('redacted_fields.value.type == "method"'),
                    }
                },
            },
        )

        association = Wafv2WebAclAssociation(
            self,
            "web_acl_association",
            resource_arn="${each.value}",
            web_acl_arn=self.expr(ref(acl, "arn")),
        )
        # Static keys (the map's names), so ARNs unknown until apply still plan.
        association.add_override(
            "for_each",
            '${var.create && var.scope == "REGIONAL" ? var.associated_resource_arns : {}}',
        )

        shield_on = "var.create && var.create_shield_protections"
        protections = ShieldProtection(
            self,
            "shield",
            name="${var.name_prefix}-${each.key}",
            resource_arn="${each.value}",
            tags=self.tags(),
        )
        protections.add_override("for_each", f"${{{shield_on} ? var.shield_resource_arns : {{}}}}")
        # Protection group ids are account-wide (Shield is a global service) and at most
        # 36 characters.
        group_id = f"${{var.name_prefix}}-{self.region_name}"
        group = ShieldProtectionGroup(
            self,
            "shield_group",
            count=Token.as_number(
                f"${{{shield_on} && length(var.shield_resource_arns) > 0 ? 1 : 0}}"
            ),
            protection_group_id=group_id,
            aggregation="MAX",
            pattern="ARBITRARY",
            members=Token.as_list("${[for p in aws_shield_protection.shield : p.resource_arn]}"),
            tags=self.tags(),
        )
        group.add_override(
            "lifecycle.precondition",
            [
                {
                    "condition": f'${{length("{group_id}") <= 36}}',
                    "error_message": "Shield protection group ids are at most 36 characters: "
                    "name_prefix and the region together must fit in 35.",
                }
            ],
        )
        mitigation = ShieldApplicationLayerAutomaticResponse(
            self,
            "shield_auto_mitigation",
            resource_arn='${lookup(var.shield_resource_arns, each.key, "")}',
            action="${upper(each.value)}",
            # Shield needs the protection, and the web ACL on the resource, first.
            depends_on=[protections, association],
        )
        mitigation.add_override(
            "for_each", f"${{{shield_on} ? var.shield_automatic_mitigation : {{}}}}"
        )
        mitigation.add_override(
            "lifecycle.precondition",
            [
                {
                    "condition": '${can(regex(":(cloudfront::[0-9]+:distribution|'
                    'elasticloadbalancing:[a-z0-9-]+:[0-9]+:loadbalancer/app)/", '
                    'lookup(var.shield_resource_arns, each.key, "")))}',
                    "error_message": "Shield automatic application-layer mitigation protects "
                    "CloudFront distributions and Application Load Balancers only.",
                }
            ],
        )

        ip_sets = f"concat({splat(sets[('block', 4)], 'arn')}, {splat(sets[('block', 6)], 'arn')})"
        blocking_remediator(
            self,
            key_arn,
            resources={"ip_sets": ip_sets},
            roles=(Role.INBOUND_ATTACKER,),
            environment={
                "IPV4_SET_NAME": self.expr(ref(sets[("block", 4)], "name")),
                "IPV4_SET_ID": self.expr(ref(sets[("block", 4)], "id")),
                "IPV6_SET_NAME": self.expr(ref(sets[("block", 6)], "name")),
                "IPV6_SET_ID": self.expr(ref(sets[("block", 6)], "id")),
                "IP_SET_SCOPE": "${var.scope}",
                "MAX_ADDRESSES_PER_SET": "${var.max_addresses_per_set}",
            },
        )

        self.output("web_acl_arn", f"try({ref(acl, 'arn')}, null)")
        self.output("web_acl_id", f"try({ref(acl, 'id')}, null)")
        self.output("blocklist_ipv4_ip_set_arn", f"try({ref(sets[('block', 4)], 'arn')}, null)")
        self.output("blocklist_ipv6_ip_set_arn", f"try({ref(sets[('block', 6)], 'arn')}, null)")
        self.output(
            "allowlist_ip_set_arns",
            f"concat({splat(sets[('allow', 4)], 'arn')}, {splat(sets[('allow', 6)], 'arn')})",
        )
        self.output("log_group_arn", f"try({ref(log_group, 'arn')}, null)")
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output("state_table_name", "try(aws_dynamodb_table.state[0].name, null)")
        self.output("waf_blocker_function_arn", "try(aws_lambda_function.waf_blocker[0].arn, null)")
        self.output("waf_blocker_dlq_arn", "try(aws_sqs_queue.waf_blocker_dlq[0].arn, null)")
        self.output(
            "shield_protection_ids", "{for name, p in aws_shield_protection.shield : name => p.id}"
        )


SAMPLING = "${var.sampled_requests_enabled}"


def _visibility(metric: str) -> Wafv2WebAclVisibilityConfig:
    return Wafv2WebAclVisibilityConfig(
        cloudwatch_metrics_enabled=True,
        metric_name=metric,
        sampled_requests_enabled=Token.as_any(SAMPLING),
    )


def _visibility_block(metric: str) -> dict[str, Any]:
    return {
        "cloudwatch_metrics_enabled": True,
        "metric_name": metric,
        "sampled_requests_enabled": SAMPLING,
    }


def _flag(condition: str) -> dict[str, Any]:
    """An empty nested block present only when ``condition`` holds."""
    return {"for_each": f"${{{condition} ? [1] : []}}", "content": {}}


def _ip_set_statement(ip_set: Wafv2IpSet) -> dict[str, Any]:
    return {"ip_set_reference_statement": {"arn": f"${{{ref(ip_set, 'arn')}}}"}}


def _blocklist_rule(
    version: int, priority: int, blocklist: Wafv2IpSet, allowlist: Wafv2IpSet
) -> dict[str, Any]:
    """Block what the remediator listed, unless the allowlist covers it: an operator's
    allowlist beats a block written before the address was allow-listed."""
    name = f"blocklist-ipv{version}"
    return {
        "name": name,
        "priority": priority,
        "action": {"block": {}},
        "statement": {
            "and_statement": {
                "statement": [
                    _ip_set_statement(blocklist),
                    {"not_statement": {"statement": _ip_set_statement(allowlist)}},
                ]
            }
        },
        "visibility_config": _visibility_block(f"${{var.name_prefix}}-{name}"),
    }


def _allowlist_bypass_rules(sets: dict[tuple[str, int], Wafv2IpSet]) -> dict[str, Any]:
    """With allowlist_bypass_enabled, an Allow rule per IP version ahead of every other."""
    arns = {
        f"allowlist-ipv{version}": {
            "priority": 0 if version == 4 else 1,
            "arn": f"${{{ref(sets[('allow', version)], 'arn')}}}",
        }
        for version in (4, 6)
    }
    listed = ", ".join(
        f'"{name}" = {{priority = {value["priority"]}, arn = {value["arn"][2:-1]}}}'
        for name, value in arns.items()
    )
    return {
        "for_each": f"${{var.allowlist_bypass_enabled ? {{{listed}}} : {{}}}}",
        "content": {
            "name": "${rule.key}",
            "priority": "${rule.value.priority}",
            "action": {"allow": {}},
            "statement": {"ip_set_reference_statement": {"arn": "${rule.value.arn}"}},
            "visibility_config": _visibility_block("${var.name_prefix}-${rule.key}"),
        },
    }


def _rate_rules() -> dict[str, Any]:
    value = "rule.value"
    return {
        "for_each": "${{for i, r in var.rate_rules : r.name => merge(r, {priority = 10 + i})}}",
        "content": {
            "name": "${rule.key}",
            "priority": f"${{{value}.priority}}",
            "action": {
                "dynamic": {
                    "block": _flag(f'{value}.action == "block"'),
                    "count": _flag(f'{value}.action == "count"'),
                }
            },
            "statement": {
                "rate_based_statement": {
                    "limit": f"${{{value}.limit}}",
                    "evaluation_window_sec": f"${{{value}.window}}",
                    "aggregate_key_type": f"${{{value}.aggregate}}",
                    "dynamic": {
                        "forwarded_ip_config": {
                            "for_each": f'${{{value}.aggregate == "FORWARDED_IP" ? [{value}.forwarded_ip_header] : []}}',
                            "content": {
                                "header_name": "${forwarded_ip_config.value}",
                                "fallback_behavior": "MATCH",
                            },
                        },
                        "scope_down_statement": {
                            "for_each": f'${{{value}.uri_path_prefix != "" || length({value}.country_codes) > 0 ? [{value}] : []}}',
                            "content": {
                                "dynamic": {
                                    "byte_match_statement": {
                                        "for_each": '${scope_down_statement.value.uri_path_prefix != "" ? [scope_down_statement.value.uri_path_prefix] : []}',
                                        "content": {
                                            "search_string": "${lower(byte_match_statement.value)}",
                                            "positional_constraint": "STARTS_WITH",
                                            "field_to_match": {"uri_path": {}},
                                            "text_transformation": [
                                                {"priority": priority, "type": transformation}
                                                for priority, transformation in enumerate(
                                                    PATH_TRANSFORMATIONS
                                                )
                                            ],
                                        },
                                    },
                                    "geo_match_statement": {
                                        "for_each": "${length(scope_down_statement.value.country_codes) > 0 ? [scope_down_statement.value.country_codes] : []}",
                                        "content": {
                                            "country_codes": "${geo_match_statement.value}"
                                        },
                                    },
                                }
                            },
                        },
                    },
                }
            },
            "visibility_config": _visibility_block("${var.name_prefix}-${rule.key}"),
        },
    }


def _managed_rule_groups() -> dict[str, Any]:
    return {
        "for_each": '${{for i, g in var.managed_rule_groups : "${g.vendor}-${g.name}" => merge(g, {priority = 100 + i})}}',
        "content": {
            "name": "${rule.key}",
            "priority": "${rule.value.priority}",
            "override_action": {"none": {}},
            "statement": {
                "managed_rule_group_statement": {
                    "name": "${rule.value.name}",
                    "vendor_name": "${rule.value.vendor}",
                    "version": '${rule.value.version != "" ? rule.value.version : null}',
                    "dynamic": {
                        "rule_action_override": {
                            "for_each": "${rule.value.rule_overrides_to_count}",
                            "content": {
                                "name": "${rule_action_override.value}",
                                "action_to_use": {"count": {}},
                            },
                        }
                    },
                }
            },
            "visibility_config": _visibility_block("${var.name_prefix}-${rule.key}"),
        },
    }
