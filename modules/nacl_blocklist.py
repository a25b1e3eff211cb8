"""Module ``nacl_blocklist``: stop an attacker at the subnet, for every protocol.

The paired ``nacl_blocker`` Lambda inserts DENY entries for the addresses GuardDuty
findings accuse (the catalog and address rules it shares with ``waf_blocker``) into a
reserved rule-number range of the guarded network ACLs, expires them, and reconciles the
range with its state table on every sweep, so drift never halts it.
"""

from __future__ import annotations

from cdktn import TerraformLocal, Token
from cdktn_provider_aws.data_aws_network_acls import (
    DataAwsNetworkAcls,
    DataAwsNetworkAclsFilter,
)

from bundle.inputs import Input, integer_between, regex
from bundle.module import ModuleStack, Output, ref
from functions.common.finding_catalog import Role
from modules.blocking import QUEUE_PERMISSIONS, blocking_inputs, blocking_remediator

# AWS allows 20 entries per direction per network ACL by default (40 with a quota
# increase); the remediator's share of them must leave room for the ACL's own rules.
DEFAULT_QUOTA = 20


# Rules across variables, checked at plan (variable validation sees one variable).
RANGE_CHECKS = (
    {
        "condition": "${var.rule_number_end >= var.rule_number_start}",
        "error_message": "rule_number_end must not be below rule_number_start: the range needs at least one slot.",
    },
    {
        "condition": "${var.rule_number_end - var.rule_number_start + 1 >= var.capacity}",
        "error_message": "The reserved rule-number range must hold at least `capacity` numbers.",
    },
)


class NaclBlocklistModule(ModuleStack):
    name = "nacl_blocklist"
    title = "NACL blocklist: deny attacker addresses at the subnet"
    summary = (
        "The `nacl_blocker` Lambda and its wiring: GuardDuty findings of the catalog it "
        "shares with `waf_blocker` (and a schedule) trigger it; it inserts DENY entries "
        "(all protocols, /32 or /128) for every global, non-allow-listed attacker address "
        "into a reserved rule-number range of the guarded network ACLs (or the ACL of the "
        "finding's subnet), up to a capacity per ACL and direction, evicting the entry "
        "that expires first when full. It never touches an entry outside the range, adopts "
        "no entry it did not create, and every sweep reconciles the range with its "
        "DynamoDB state both ways. Its IAM policy is scoped to the guarded ACLs."
    )
    function = "nacl_blocker"
    service_permissions = QUEUE_PERMISSIONS
    limits = (
        "AWS allows 20 rules per network ACL and direction by default (IPv4 and IPv6 "
        "counted apart, the ACL's own rules and the default rule included): `capacity` is "
        "at most 20 and must leave room for the ACL's own rules.",
        "A network ACL exists in one region of one account: ids and subnets the module "
        "cannot find there fail the plan, and environment files refuse them for several "
        "regions.",
        "GuardDuty re-publishes an ongoing finding at the detector's publishing frequency "
        "(six hours by default): the default block lasts twice that.",
    )
    inputs = (
        Input(
            "network_acl_ids",
            "list(string)",
            "Network ACLs to guard, in this module's region (an ACL exists in one region "
            "only; the plan fails on an id it cannot find). With neither this nor subnet_ids, "
            "the remediator guards the ACL of the subnet of the instance in each finding "
            "(and its policy then covers every network ACL in the account and region).",
            default=[],
            region_bound="ids",
            each=(
                regex(
                    r"^acl-[0-9a-f]{8,17}$",
                    "Must be a network ACL id such as acl-0123456789abcdef0.",
                ),
            ),
        ),
        Input(
            "subnet_ids",
            "list(string)",
            "Subnets whose network ACLs to guard (resolved at plan time; the plan fails on a "
            "subnet it cannot find), in addition to network_acl_ids.",
            default=[],
            region_bound="ids",
            each=(
                regex(
                    r"^subnet-[0-9a-f]{8,17}$",
                    "Must be a subnet id such as subnet-0123456789abcdef0.",
                ),
            ),
        ),
        Input(
            "rule_number_start",
            "number",
            "First rule number reserved for the remediator's DENY entries. Keep the range "
            "below your ALLOW rules: network ACLs evaluate the lowest number first. See "
            "https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html.",
            default=10,
            rules=(integer_between(1, 32766),),
        ),
        Input(
            "rule_number_end",
            "number",
            "Last reserved rule number (inclusive); the range must hold at least one slot "
            "and at least `capacity` of them.",
            default=29,
            rules=(integer_between(1, 32766),),
        ),
        Input(
            "capacity",
            "number",
            "Most DENY entries the remediator keeps per ACL and direction (1-20: AWS allows "
            f"{DEFAULT_QUOTA} entries per direction by default, shared with the ACL's own "
            "rules). When full, the entry expiring first is evicted.",
            default=10,
            rules=(integer_between(1, DEFAULT_QUOTA),),
        ),
        Input(
            "egress_enabled",
            "bool",
            "Whether the remediator writes egress entries too: an inbound attacker is then "
            "denied both ways (inbound is always denied), and an outbound malicious "
            "destination (a C&C server, drop point or mining pool our workload reached; "
            "docs/finding-catalog.md) is denied at the egress side, the only place that "
            "answers it. Off, such findings are reported as not blocked.",
            default=False,
        ),
    )
    inputs += blocking_inputs("the remediator refuses to insert entries for them")
    outputs = (
        Output(
            "guarded_network_acl_ids",
            "Network ACLs the remediator guards (empty: the finding's subnet).",
        ),
        Output("kms_key_arn", "ARN of the module's KMS key (state table, DLQ, logs)."),
        Output("state_table_name", "Name of the DynamoDB table of NACL blocks."),
        Output("nacl_blocker_function_arn", "ARN of the nacl_blocker Lambda function."),
        Output("nacl_blocker_dlq_arn", "ARN of the nacl_blocker dead-letter queue."),
    )

    def build(self) -> None:
        key = self.module_key("Playbook as Code nacl_blocklist: state table, DLQ, logs", 30)
        key_arn = self.expr(ref(key, "arn"))
        # The guarded ACLs must exist here: an id of another region or account, or a subnet
        # without an ACL, would otherwise give an empty list, and the policy would fall back
        # to every ACL of the account while the remediator guards nothing. The lookups fail
        # the plan instead (at apply when the ids are created in the same run).
        by_id = DataAwsNetworkAcls(
            self,
            "by_id",
            count=Token.as_number("${var.create && length(var.network_acl_ids) > 0 ? 1 : 0}"),
            filter=[
                DataAwsNetworkAclsFilter(
                    name="network-acl-id", values=Token.as_list("${var.network_acl_ids}")
                )
            ],
        )
        by_id.add_override(
            "lifecycle.postcondition",
            [
                {
                    "condition": "${length(setsubtract(toset(var.network_acl_ids), toset(self.ids))) == 0}",
                    "error_message": "network_acl_ids names a network ACL that does not exist in "
                    "this account and region (an ACL exists in one region only).",
                }
            ],
        )
        from_subnets = DataAwsNetworkAcls(
            self,
            "from_subnets",
            count=Token.as_number("${var.create ? length(var.subnet_ids) : 0}"),
            filter=[
                DataAwsNetworkAclsFilter(
                    name="association.subnet-id",
                    values=Token.as_list("${[var.subnet_ids[count.index]]}"),
                )
            ],
        )
        from_subnets.add_override(
            "lifecycle.postcondition",
            [
                {
                    "condition": "${length(self.ids) == 1}",
                    "error_message": "A subnet in subnet_ids has no network ACL in this account "
                    "and region: check the id and the provider's region.",
                }
            ],
        )
        guarded = f"distinct(concat(var.network_acl_ids, flatten(data.{from_subnets.terraform_resource_type}.{from_subnets.friendly_unique_id}[*].ids)))"
        account_prefix = (
            "arn:${data.aws_partition.partition.partition}:ec2:${data.aws_region.region.id}:"
            "${data.aws_caller_identity.current.account_id}:network-acl/"
        )
        network_acls = f'length(local.guarded_acls) > 0 ? [for id in local.guarded_acls : "{account_prefix}${{id}}"] : ["{account_prefix}*"]'
        TerraformLocal(self, "guarded_acls", self.expr(guarded))
        function = blocking_remediator(
            self,
            key_arn,
            resources={"network_acls": network_acls, "describe": '["*"]'},
            roles=tuple(Role),
            environment={
                "NACL_IDS": "${jsonencode(local.guarded_acls)}",
                "RULE_RANGE_START": "${var.rule_number_start}",
                "RULE_RANGE_END": "${var.rule_number_end}",
                "CAPACITY": "${var.capacity}",
                "DIRECTIONS": '${jsonencode(var.egress_enabled ? ["ingress", "egress"] : ["ingress"])}',
            },
            preconditions=RANGE_CHECKS,
        )
        self.output("guarded_network_acl_ids", "local.guarded_acls")
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output("state_table_name", "try(aws_dynamodb_table.state[0].name, null)")
        self.output("nacl_blocker_function_arn", f"try({ref(function, 'arn')}, null)")
        self.output("nacl_blocker_dlq_arn", "try(aws_sqs_queue.nacl_blocker_dlq[0].arn, null)")
