"""Module ``threat_lists``: GuardDuty custom threat lists kept fresh from feeds.

A private, KMS-encrypted, versioned bucket (public access blocked, TLS only, access
logging optional) holds one list object per feed; one ``aws_guardduty_threatintelset``
per feed (and one for the manual entries) points at it; an optional trusted
``aws_guardduty_ipset`` holds the organisation's own ranges. The ``threat_feed`` Lambda
fetches each feed on its refresh interval (one EventBridge schedule per interval),
normalises it with the blockers' address rules, writes the list only when it changed and
calls ``UpdateThreatIntelSet`` so GuardDuty reloads it.

The threat intel sets are created inactive and Terraform ignores ``activate`` afterwards:
the list object does not exist until the updater's first run, which writes it and
activates the set (GuardDuty then reads it).
"""

from __future__ import annotations

import re
from typing import Any

from cdktn import TerraformLocal, Token
from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_event_target import (
    CloudwatchEventTarget,
    CloudwatchEventTargetDeadLetterConfig,
    CloudwatchEventTargetRetryPolicy,
)
from cdktn_provider_aws.guardduty_detector import GuarddutyDetector
from cdktn_provider_aws.guardduty_ipset import GuarddutyIpset
from cdktn_provider_aws.guardduty_threatintelset import GuarddutyThreatintelset
from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktn_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktn_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from cdktn_provider_aws.s3_object import S3Object

from bundle.inputs import (
    CIDR,
    SECRET_NAME,
    Attribute,
    Input,
    Rule,
    Shape,
    integer_between,
    one_of,
    regex,
)
from bundle.module import (
    EVENT_RETRY_ATTEMPTS,
    EVENT_RETRY_SECONDS,
    REPORTING_INPUTS,
    ModuleStack,
    Output,
    key_policy,
    ref,
    splat,
)
from functions.threat_feed import entries, parsers
from functions.threat_feed.logic import LIST_PREFIX, MANUAL_LIST, STATE_PREFIX
from modules.blocking import ALLOWLIST_FITS

# GuardDuty allows 6 threat intel sets and 1 trusted IP set per detector:
# https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_limits.html
MAX_THREAT_LISTS = 6
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
REFRESH_MINUTES = (15, 30, 60, 120, 240, 360, 720, 1440, 10080)

FEED = Shape(
    "feed",
    (
        Attribute("name", "string"),
        Attribute("url", "string"),
        Attribute("format", "string", "plain"),
        Attribute("column", "string", ""),
        Attribute("refresh_minutes", "number", 1440),
        Attribute("auth_secret", "string", ""),
    ),
)


def _feed_rule(condition: str, message: str, check: Any) -> Rule:
    return Rule(condition=condition, message=message, check=check)


FEED_CHECKS = (
    _feed_rule(
        f'can(regex("{FEED_NAME.pattern}", {{v}}.name)) && {{v}}.name != "{MANUAL_LIST}"',
        "Feed names are 1-40 lowercase letters, digits and hyphens, starting with a letter "
        f"or digit, and not {MANUAL_LIST} (the manual list's name).",
        lambda f: bool(FEED_NAME.fullmatch(f["name"])) and f["name"] != MANUAL_LIST,
    ),
    _feed_rule(
        'can(regex("^https://[^\\\\s]+$", {v}.url))',
        "Feed URLs must be https:// URLs.",
        lambda f: bool(re.fullmatch(r"https://\S+", f["url"])),
    ),
    _feed_rule(
        "contains(" + str(list(parsers.FORMATS)).replace("'", '"') + ", {v}.format)",
        f"Feed formats are {', '.join(parsers.FORMATS)}.",
        lambda f: f["format"] in parsers.FORMATS,
    ),
    _feed_rule(
        '{v}.format != "csv" || {v}.column != ""',
        "A csv feed needs its column: the header of the column holding the addresses.",
        lambda f: f["format"] != "csv" or f["column"] != "",
    ),
    _feed_rule(
        "contains(" + str(list(REFRESH_MINUTES)) + ", {v}.refresh_minutes)",
        f"Feed refresh_minutes must be one of {', '.join(map(str, REFRESH_MINUTES))}.",
        lambda f: f["refresh_minutes"] in REFRESH_MINUTES,
    ),
    _feed_rule(
        SECRET_NAME.condition.replace("{v}", "{v}.auth_secret"),
        "A feed's auth_secret must be empty or a Secrets Manager secret name.",
        lambda f: SECRET_NAME.check(f["auth_secret"]),
    ),
)
UNIQUE_FEED_NAMES = Rule(
    condition="length(distinct([for f in {v} : f.name])) == length({v})",
    message="Feed names must be unique.",
    # The environment schema hands list rules validated feed models, not dicts.
    check=lambda feeds: len({f.name for f in feeds}) == len(feeds),
)
AT_MOST_SIX = Rule(
    condition=f"length({{v}}) <= {MAX_THREAT_LISTS}",
    message=f"GuardDuty takes at most {MAX_THREAT_LISTS} threat lists per detector.",
    check=lambda feeds: len(feeds) <= MAX_THREAT_LISTS,
)
TRUSTED_CAP = Rule(
    condition=f"length({{v}}) <= {entries.TRUSTED_LIST_MAX_ENTRIES}",
    message=f"GuardDuty's trusted IP list takes at most {entries.TRUSTED_LIST_MAX_ENTRIES} entries.",
    check=lambda values: len(values) <= entries.TRUSTED_LIST_MAX_ENTRIES,
)
DETECTOR_ID = regex(
    r"^$|^[0-9a-f]{32}$", "Must be empty or a GuardDuty detector id (32 hexadecimal digits)."
)
BUCKET_NAME = regex(
    r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "Must be empty or an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens).",
)

# S3 bucket names are global across all AWS accounts: the default carries account and region.
_BUCKET_NAME = (
    '"${var.name_prefix}-threat-lists-${data.aws_caller_identity.current.account_id}-'
    '${data.aws_region.region.id}"'
)
_GUARDDUTY_ROLE = (
    "arn:${data.aws_partition.partition.partition}:iam::"
    "${data.aws_caller_identity.current.account_id}:role/aws-service-role/"
    "guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty"
)


class ThreatListsModule(ModuleStack):
    name = "threat_lists"
    title = "Threat lists: GuardDuty custom threat lists kept fresh from feeds"
    summary = (
        "GuardDuty raises `...MaliciousIPCaller.Custom` findings for addresses on the "
        "threat lists it is given; the WAF and NACL blockers answer them. This module keeps "
        "those lists: a private, KMS-encrypted, versioned, TLS-only bucket; one GuardDuty "
        "threat intel set per feed (at most 6 with the manual list) and an optional trusted "
        "IP set; and the `threat_feed` Lambda, run on each feed's refresh interval, which "
        "fetches the feed over HTTPS (conditional GET, optional auth header from Secrets "
        "Manager, size and time limits), reads plain, Spamhaus DROP/EDROP, CSV or STIX 2.1, "
        "drops malformed, non-global and allow-listed entries by the blockers' rules (each "
        "reason counted), deduplicates and collapses, holds the list to GuardDuty's caps, "
        "writes it only when it changed and calls UpdateThreatIntelSet so GuardDuty reloads "
        "it. A failing, garbage or empty feed keeps the last good list and is reported."
    )
    function = "threat_feed"
    limits = (
        f"GuardDuty takes at most {MAX_THREAT_LISTS} threat intel sets per detector (the "
        "feeds plus the manual list, validated at plan; sets created outside this module "
        "count too) and one trusted IP set.",
        f"A threat list holds at most {entries.THREAT_LIST_MAX_ENTRIES:,} entries and 35 MB; "
        f"the trusted list {entries.TRUSTED_LIST_MAX_ENTRIES:,} entries. `cap_policy` decides "
        "what a feed over the cap does: refuse (keep the last good list) or truncate (keep "
        "the first entries by feed order).",
        "GuardDuty reloads a list only on UpdateThreatIntelSet, which the updater calls after "
        "each write. The sets are created inactive and the updater activates them on its "
        "first run (Terraform ignores `activate` afterwards).",
        "S3 bucket names are global across all AWS accounts: the default "
        "`<name_prefix>-threat-lists-<account id>-<region>` is unique, and its length is "
        "checked at plan.",
        "Domain indicators (GuardDuty's threat entity sets) are not handled: the AWS "
        "provider has no resource for them yet; STIX domain indicators are counted and left "
        "out.",
    )
    inputs = (
        Input(
            "detector_id",
            "string",
            "GuardDuty detector of this account and region. Empty with create_detector true "
            "creates one; empty otherwise fails the plan. See "
            "https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_settingup.html.",
            default="",
            rules=(DETECTOR_ID,),
            region_bound="ids",
        ),
        Input(
            "create_detector",
            "bool",
            "Whether to create (and enable) the GuardDuty detector here. Only one detector "
            "exists per account and region: leave false where GuardDuty is already on.",
            default=False,
        ),
        Input(
            "feeds",
            "",
            "Threat feeds, one GuardDuty threat intel set each: name (1-40 of a-z, 0-9, -), "
            "https url, format (plain: one address or CIDR per line; drop: Spamhaus "
            "DROP/EDROP; csv: a header row and `column`; stix: a STIX 2.1 bundle), "
            "refresh_minutes (15 to 10080) and auth_secret (a Secrets Manager secret whose "
            'value is {"header": "...", "value": "..."}, or a plain Authorization value). '
            "See https://docs.aws.amazon.com/guardduty/latest/ug/guardduty_upload-lists.html.",
            default=[],
            element=FEED,
            each=FEED_CHECKS,
            rules=(UNIQUE_FEED_NAMES, AT_MOST_SIX),
        ),
        Input(
            "manual_entries",
            "list(string)",
            "Addresses and CIDRs listed by hand (past incidents): normalised like a feed into "
            f"their own threat list `{MANUAL_LIST}`, refreshed daily and on demand.",
            default=[],
        ),
        Input(
            "trusted_cidrs",
            "list(string)",
            "The organisation's own egress and scanner ranges: GuardDuty raises no findings "
            "for them (the trusted IP list). Empty creates no trusted list.",
            default=[],
            each=(CIDR,),
            rules=(TRUSTED_CAP,),
        ),
        Input(
            "allowlist_cidrs",
            "list(string)",
            "Addresses never listed as threats (a feed entry inside or overlapping them is "
            "left out and counted). Non-global addresses are never listed anyway.",
            default=[],
            each=(CIDR,),
            rules=(ALLOWLIST_FITS,),
        ),
        Input(
            "cap_policy",
            "string",
            "What a list over GuardDuty's caps does: refuse (keep the last good list and "
            "report) or truncate (keep the first entries by feed order and report).",
            default="refuse",
            rules=(one_of(entries.CAP_POLICIES),),
        ),
        Input(
            "max_entries",
            "number",
            "Entries a threat list may hold (GuardDuty's maximum is 250,000).",
            default=entries.THREAT_LIST_MAX_ENTRIES,
            rules=(integer_between(1, entries.THREAT_LIST_MAX_ENTRIES),),
        ),
        Input(
            "max_feed_megabytes",
            "number",
            "Largest feed download read, in MiB; a bigger feed keeps its last good list.",
            default=100,
            rules=(integer_between(1, 500),),
        ),
        Input(
            "fetch_timeout_seconds",
            "number",
            "Time allowed to download one feed.",
            default=60,
            rules=(integer_between(5, 600),),
        ),
        Input(
            "list_bucket",
            "string",
            "Name of the list bucket. Empty gives `<name_prefix>-threat-lists-<account id>-"
            "<region>` (S3 bucket names are global across all AWS accounts).",
            default="",
            rules=(BUCKET_NAME,),
        ),
        Input(
            "access_log_bucket",
            "string",
            "Bucket receiving S3 server access logs of the list bucket. Empty turns access "
            "logging off (CloudTrail data events still record object access).",
            default="",
            rules=(BUCKET_NAME,),
        ),
        Input(
            "list_bucket_force_destroy",
            "bool",
            "Whether `terraform destroy` may empty the list bucket. Keep false outside test "
            "accounts.",
            default=False,
        ),
        *REPORTING_INPUTS,
    )
    outputs = (
        Output("guardduty_detector_id", "The GuardDuty detector the lists belong to."),
        Output("list_bucket_name", "Name of the list bucket."),
        Output("list_bucket_arn", "ARN of the list bucket."),
        Output("kms_key_arn", "ARN of the module's KMS key (lists, queues, logs)."),
        Output("threat_intel_set_ids", "Map of list name to GuardDuty threat intel set id."),
        Output("trusted_ip_set_id", "Id of the trusted IP set (null when none)."),
        Output("threat_feed_function_arn", "ARN of the threat_feed updater Lambda."),
        Output("threat_feed_dlq_arn", "ARN of the updater's dead-letter queue."),
    )

    def build(self) -> None:
        detector = GuarddutyDetector(
            self,
            "detector",
            count=Token.as_number("${var.create && var.create_detector ? 1 : 0}"),
            enable=True,
            tags=self.tags(),
        )
        TerraformLocal(
            self,
            "detector_in_use",
            self.expr(f'var.create_detector ? try({ref(detector, "id")}, "") : var.detector_id'),
        )
        key = self._key(detector)
        key_arn = self.expr(ref(key, "arn"))
        bucket = self._bucket(key_arn)
        bucket_name = ref(bucket, "bucket")
        TerraformLocal(
            self,
            "list_location",
            self.expr(f'"https://s3.amazonaws.com/${{{bucket_name}}}/{LIST_PREFIX}"'),
        )
        feeds = GuarddutyThreatintelset(
            self,
            "feed",
            count=Token.as_number("${var.create ? length(var.feeds) : 0}"),
            detector_id="${local.detector_in_use}",
            name="${var.name_prefix}-${var.feeds[count.index].name}",
            format="TXT",
            location="${local.list_location}${var.feeds[count.index].name}.txt",
            activate=False,
            tags=self.tags(),
        )
        feeds.add_override("lifecycle.ignore_changes", ["activate"])
        manual = GuarddutyThreatintelset(
            self,
            "manual",
            count=Token.as_number("${var.create && length(var.manual_entries) > 0 ? 1 : 0}"),
            detector_id="${local.detector_in_use}",
            name=f"${{var.name_prefix}}-{MANUAL_LIST}",
            format="TXT",
            location=f"${{local.list_location}}{MANUAL_LIST}.txt",
            activate=False,
            tags=self.tags(),
        )
        manual.add_override("lifecycle.ignore_changes", ["activate"])
        trusted = self._trusted(bucket, key_arn)
        sets = (
            f'merge({{for i, f in var.feeds : f.name => {{id = split(":", '
            f"aws_guardduty_threatintelset.feed[i].id)[1], location = "
            f'"${{local.list_location}}${{f.name}}.txt"}}}}, '
            f'{{for s in aws_guardduty_threatintelset.manual : "{MANUAL_LIST}" => '
            f'{{id = split(":", s.id)[1], location = "${{local.list_location}}{MANUAL_LIST}.txt"}}}})'
        )
        TerraformLocal(self, "threat_lists", self.expr(sets))
        account, partition, region = self.account_id, self.arn_partition, self.region_name
        optional_arn = '{0} == "" ? [] : [{0}]'
        function = self.remediator(
            count_expression="var.create ? 1 : 0",
            kms_key_arn=key_arn,
            resources={
                "list_objects": f"flatten([for arn in {splat(bucket, 'arn')} : "
                f'["${{arn}}/{LIST_PREFIX}*", "${{arn}}/{STATE_PREFIX}*"]])',
                "list_bucket": splat(bucket, "arn"),
                "list_key": splat(key, "arn"),
                "threat_intel_sets": f'["arn:{partition}:guardduty:{region}:{account}:'
                'detector/${local.detector_in_use}/threatintelset/*"]',
                "guardduty_service_role": f'["{_GUARDDUTY_ROLE}"]',
                "feed_secrets": f'[for f in var.feeds : "arn:{partition}:secretsmanager:'
                f'{region}:{account}:secret:${{f.auth_secret}}-??????" if f.auth_secret != ""]',
                "notify_topic": optional_arn.format("var.notify_topic_arn"),
                "notify_kms_key": optional_arn.format("var.notify_kms_key_arn"),
            },
            environment={
                "LIST_BUCKET": self.expr(bucket_name),
                "LIST_KMS_KEY_ARN": key_arn,
                "DETECTOR_ID": "${local.detector_in_use}",
                "FEEDS": "${jsonencode([for f in var.feeds : {name = f.name, url = f.url, "
                "format = f.format, column = f.column, auth_secret = f.auth_secret}])}",
                "THREAT_LISTS": "${jsonencode(local.threat_lists)}",
                "MANUAL_ENTRIES": "${jsonencode(var.manual_entries)}",
                "ALLOWLIST_CIDRS": "${jsonencode(var.allowlist_cidrs)}",
                "CAP_POLICY": "${var.cap_policy}",
                "MAX_ENTRIES": "${var.max_entries}",
                "MAX_FEED_BYTES": "${var.max_feed_megabytes * 1048576}",
                "FETCH_TIMEOUT_SECONDS": "${var.fetch_timeout_seconds}",
                "NOTIFY_TOPIC_ARN": "${var.notify_topic_arn}",
            },
            # Six feeds of up to fetch_timeout_seconds each, then 250,000 entries apiece.
            timeout=900,
            memory=1024,
            preconditions=[
                {
                    "condition": '${var.create_detector || var.detector_id != ""}',
                    "error_message": "Set detector_id, or create_detector = true to create one.",
                },
                {
                    "condition": "${length(var.feeds) + (length(var.manual_entries) > 0 ? 1 : 0)"
                    f" <= {MAX_THREAT_LISTS}}}",
                    "error_message": f"GuardDuty takes at most {MAX_THREAT_LISTS} threat lists "
                    "per detector: the feeds plus the manual list are more.",
                },
                {
                    "condition": f"${{length({bucket_name}) <= 63}}",
                    "error_message": "The list bucket name is longer than S3's 63 characters: "
                    "set list_bucket or a shorter name_prefix.",
                },
            ],
        )
        self._schedules(function)
        self.output(
            "guardduty_detector_id",
            'local.detector_in_use == "" ? null : local.detector_in_use',
        )
        self.output("list_bucket_name", f"try({ref(bucket, 'bucket')}, null)")
        self.output("list_bucket_arn", f"try({ref(bucket, 'arn')}, null)")
        self.output("kms_key_arn", f"try({ref(key, 'arn')}, null)")
        self.output("threat_intel_set_ids", "{for name, s in local.threat_lists : name => s.id}")
        self.output("trusted_ip_set_id", f'try(split(":", {ref(trusted, "id")})[1], null)')
        self.output("threat_feed_function_arn", f"try({ref(function, 'arn')}, null)")
        self.output("threat_feed_dlq_arn", "try(aws_sqs_queue.threat_feed_dlq[0].arn, null)")

    # ------------------------------------------------------------------ key and bucket
    def _key(self, detector: GuarddutyDetector) -> KmsKey:
        """The module key; GuardDuty's service-linked role may decrypt the lists with it
        (it reads KMS-encrypted lists as that role)."""
        base = key_policy(self, ("events.amazonaws.com",))
        reader = (
            '{Sid = "GuardDutyReadsThreatLists", Effect = "Allow", '
            f'Principal = {{AWS = "{_GUARDDUTY_ROLE}"}}, '
            'Action = ["kms:Decrypt", "kms:DescribeKey"], Resource = "*"}'
        )
        policy = base[: -len("]}")] + ", " + reader + "]}"
        key = KmsKey(
            self,
            "this",
            count=self.count,
            description="Playbook as Code threat_lists: list bucket, queues, logs",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=self.expr(f"jsonencode({policy})"),
            tags=self.tags(),
            # The service-linked role must exist before a key policy names it; creating
            # the detector creates it.
            depends_on=[detector],
        )
        KmsAlias(
            self,
            "this_alias",
            count=self.count,
            name="alias/${var.name_prefix}-threat-lists",
            target_key_id=self.expr(ref(key, "key_id")),
        )
        self.key_arn = self.expr(ref(key, "arn"))
        return key

    def _bucket(self, key_arn: str) -> S3Bucket:
        bucket = S3Bucket(
            self,
            "lists",
            count=self.count,
            bucket=self.expr(f'var.list_bucket != "" ? var.list_bucket : {_BUCKET_NAME}'),
            force_destroy=Token.as_any("${var.list_bucket_force_destroy}"),
            tags=self.tags(),
        )
        bucket_id = self.expr(ref(bucket, "id"))
        S3BucketVersioningA(
            self,
            "lists_versioning",
            count=self.count,
            bucket=bucket_id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        self.private_bucket("lists", bucket_id, key_arn, self.count)
        S3BucketLifecycleConfiguration(
            self,
            "lists_lifecycle",
            count=self.count,
            bucket=bucket_id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="expire-old-list-versions",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=90
                        )
                    ],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=7
                        )
                    ],
                )
            ],
        )
        S3BucketLoggingA(
            self,
            "lists_logging",
            count=Token.as_number('${var.create && var.access_log_bucket != "" ? 1 : 0}'),
            bucket=bucket_id,
            target_bucket="${var.access_log_bucket}",
            target_prefix=self.expr(f'"s3/${{{ref(bucket, "bucket")}}}/"'),
        )
        self.tls_only_policy("lists", bucket, self.count)
        return bucket

    def _trusted(self, bucket: S3Bucket, key_arn: str) -> GuarddutyIpset:
        """The trusted list: Terraform writes it (its content is known at plan), and a
        changed list replaces the IP set, which makes GuardDuty read it again."""
        count = Token.as_number("${var.create && length(var.trusted_cidrs) > 0 ? 1 : 0}")
        trusted_object = S3Object(
            self,
            "trusted_list",
            count=count,
            bucket=self.expr(ref(bucket, "id")),
            key="trusted/trusted.txt",
            content='${join("", [for c in var.trusted_cidrs : "${c}\\n"])}',
            content_type="text/plain",
            server_side_encryption="aws:kms",
            kms_key_id=key_arn,
            tags=self.tags(),
        )
        ipset = GuarddutyIpset(
            self,
            "trusted",
            count=count,
            detector_id="${local.detector_in_use}",
            name="${var.name_prefix}-trusted",
            format="TXT",
            location=self.expr(
                f'"https://s3.amazonaws.com/${{{ref(bucket, "bucket")}}}/trusted/trusted.txt"'
            ),
            activate=True,
            tags=self.tags(),
            depends_on=[trusted_object],
        )
        ipset.add_override("lifecycle.replace_triggered_by", ["aws_s3_object.trusted_list"])
        return ipset

    # ------------------------------------------------------------------ schedules
    def _schedules(self, function: Any) -> None:
        """One rule per distinct refresh interval, naming the feeds it refreshes (the
        manual list rides on the daily one)."""
        TerraformLocal(
            self,
            "refresh_groups",
            self.expr(
                "{for minutes in distinct(concat([for f in var.feeds : f.refresh_minutes], "
                "length(var.manual_entries) > 0 ? [1440] : [])) : tostring(minutes) => "
                "concat([for f in var.feeds : f.name if f.refresh_minutes == minutes], "
                f'minutes == 1440 && length(var.manual_entries) > 0 ? ["{MANUAL_LIST}"] : [])}}'
            ),
        )
        TerraformLocal(self, "refresh_minutes", "${sort(keys(local.refresh_groups))}")
        count = Token.as_number("${var.create ? length(local.refresh_minutes) : 0}")
        CloudwatchEventRule(
            self,
            "schedule",
            count=count,
            name="${var.name_prefix}-threat-feed-${local.refresh_minutes[count.index]}m",
            description="Refresh the threat feeds of one refresh interval",
            schedule_expression="rate(${local.refresh_minutes[count.index]} minutes)",
            tags=self.tags(),
        )
        CloudwatchEventTarget(
            self,
            "schedule_target",
            count=count,
            rule="${aws_cloudwatch_event_rule.schedule[count.index].name}",
            target_id="threat-feed",
            arn=self.expr(ref(function, "arn")),
            input="${jsonencode({feeds = local.refresh_groups[local.refresh_minutes[count.index]]})}",
            retry_policy=CloudwatchEventTargetRetryPolicy(
                maximum_event_age_in_seconds=EVENT_RETRY_SECONDS,
                maximum_retry_attempts=EVENT_RETRY_ATTEMPTS,
            ),
            dead_letter_config=CloudwatchEventTargetDeadLetterConfig(
                arn=self.expr(ref(self._event_dead_letter_queue(), "arn"))
            ),
        )
        LambdaPermission(
            self,
            "schedule_invoke",
            count=count,
            statement_id="AllowEventBridge-${local.refresh_minutes[count.index]}m",
            action="lambda:InvokeFunction",
            function_name=self.expr(ref(function, "function_name")),
            principal="events.amazonaws.com",
            source_arn="${aws_cloudwatch_event_rule.schedule[count.index].arn}",
        )
