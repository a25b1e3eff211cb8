"""The AWS Config managed rules the ``config_rules`` module deploys, as data.

Each entry names the rule's source identifier (from AWS's published list of managed
rules, https://docs.aws.amazon.com/config/latest/developerguide/managed-rules-by-aws-config.html),
the input parameters it is deployed with, the threats of this project it guards against,
the ``config_remediator`` action that fixes a NON_COMPLIANT resource safely (``None``:
people are told, nothing is changed) and whether it is on by default. The module's
``rules`` input enables, disables or re-parameterises each entry by its key; the key is
also the rule's name after ``<name_prefix>-``.

The catalog is Python rather than YAML so that mypy checks it and the remediator's action
names are the ones :mod:`functions.config_remediator.logic` defines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# The threats named in docs/architecture.md ("The threats the playbooks answer").
THREATS = (
    "data exposure",
    "data spillage",
    "malicious file hosting",
    "website defacement",
    "key material compromise",
    "IAM user brute force",
    "session token hijacking",
    "STS token replay",
    "AMI poisoning",
    "DDoS",
    "open SSH/RDP",
    "CloudTrail turned off",
    "account id leak",
    "subdomain takeover",
)

# config_remediator actions (functions/config_remediator/logic.py ACTIONS).
REVOKE_OPEN_ADMIN_PORTS = "revoke_open_admin_ports"
BLOCK_S3_PUBLIC_ACCESS = "block_s3_public_access"
ENABLE_S3_DEFAULT_ENCRYPTION = "enable_s3_default_encryption"
DEACTIVATE_OLD_ACCESS_KEYS = "deactivate_old_access_keys"
REQUIRE_IMDSV2 = "require_imdsv2"


@dataclass(frozen=True)
class ManagedRule:
    source: str  # the managed rule's source identifier
    description: str
    threats: tuple[str, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Parameters the rule accepts beyond the defaults above (so an override can set them).
    optional_parameters: tuple[str, ...] = ()
    remediation: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.threats) - set(THREATS)
        if unknown or not self.threats:
            raise ValueError(f"{self.source}: threats must come from THREATS, got {unknown}")

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(sorted({*self.parameters, *self.optional_parameters}))


_RULES: dict[str, ManagedRule] = {
    "s3-bucket-public-read-prohibited": ManagedRule(
        "S3_BUCKET_PUBLIC_READ_PROHIBITED",
        "S3 buckets do not allow public read access (ACLs or policy).",
        ("data exposure", "data spillage"),
        remediation=BLOCK_S3_PUBLIC_ACCESS,
    ),
    "s3-bucket-public-write-prohibited": ManagedRule(
        "S3_BUCKET_PUBLIC_WRITE_PROHIBITED",
        "S3 buckets do not allow public write access.",
        ("malicious file hosting", "website defacement"),
        remediation=BLOCK_S3_PUBLIC_ACCESS,
    ),
    "s3-bucket-level-public-access-prohibited": ManagedRule(
        "S3_BUCKET_LEVEL_PUBLIC_ACCESS_PROHIBITED",
        "S3 buckets have bucket-level Block Public Access on.",
        ("data exposure", "malicious file hosting"),
        optional_parameters=("excludedPublicBuckets",),
        remediation=BLOCK_S3_PUBLIC_ACCESS,
    ),
    "s3-bucket-server-side-encryption-enabled": ManagedRule(
        "S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED",
        "S3 buckets have default encryption.",
        ("data spillage",),
        remediation=ENABLE_S3_DEFAULT_ENCRYPTION,
    ),
    "s3-bucket-versioning-enabled": ManagedRule(
        "S3_BUCKET_VERSIONING_ENABLED",
        "S3 buckets keep versions, so defaced or deleted content can be restored.",
        ("website defacement",),
        optional_parameters=("isMfaDeleteEnabled",),
    ),
    "encrypted-volumes": ManagedRule(
        "ENCRYPTED_VOLUMES",
        "Attached EBS volumes are encrypted (fixing means a snapshot copy and a swap).",
        ("data spillage",),
        optional_parameters=("kmsId",),
    ),
    "access-keys-rotated": ManagedRule(
        "ACCESS_KEYS_ROTATED",
        "Active IAM access keys are younger than maxAccessKeyAge days.",
        ("key material compromise",),
        parameters={"maxAccessKeyAge": "90"},
        remediation=DEACTIVATE_OLD_ACCESS_KEYS,
    ),
    "iam-user-unused-credentials-check": ManagedRule(
        "IAM_USER_UNUSED_CREDENTIALS_CHECK",
        "IAM users have no password or key unused for maxCredentialUsageAge days.",
        ("key material compromise",),
        parameters={"maxCredentialUsageAge": "90"},
    ),
    "iam-root-access-key-check": ManagedRule(
        "IAM_ROOT_ACCESS_KEY_CHECK",
        "The root user has no access key (only root itself can delete one).",
        ("key material compromise",),
    ),
    "root-account-mfa-enabled": ManagedRule(
        "ROOT_ACCOUNT_MFA_ENABLED",
        "The root user signs in with MFA.",
        ("IAM user brute force",),
    ),
    "mfa-enabled-for-iam-console-access": ManagedRule(
        "MFA_ENABLED_FOR_IAM_CONSOLE_ACCESS",
        "IAM users with a console password have MFA.",
        ("IAM user brute force",),
    ),
    "iam-password-policy": ManagedRule(
        "IAM_PASSWORD_POLICY",
        "The account password policy is strong (CIS AWS Foundations values).",
        ("IAM user brute force",),
        parameters={
            "RequireUppercaseCharacters": "true",
            "RequireLowercaseCharacters": "true",
            "RequireSymbols": "true",
            "RequireNumbers": "true",
            "MinimumPasswordLength": "14",
            "PasswordReusePrevention": "24",
            "MaxPasswordAge": "90",
        },
    ),
    "ec2-imdsv2-check": ManagedRule(
        "EC2_IMDSV2_CHECK",
        "EC2 instances require IMDSv2 session tokens for instance metadata.",
        ("session token hijacking", "STS token replay"),
        remediation=REQUIRE_IMDSV2,
    ),
    "approved-amis-by-id": ManagedRule(
        "APPROVED_AMIS_BY_ID",
        "Running instances use approved AMIs (set amiIds to enable).",
        ("AMI poisoning",),
        optional_parameters=("amiIds",),
        enabled=False,
    ),
    "approved-amis-by-tag": ManagedRule(
        "APPROVED_AMIS_BY_TAG",
        "Running instances use AMIs carrying an approval tag (amisByTagKeyAndValue).",
        ("AMI poisoning",),
        parameters={"amisByTagKeyAndValue": "playbook-approved:true"},
        enabled=False,
    ),
    "alb-waf-enabled": ManagedRule(
        "ALB_WAF_ENABLED",
        "Application Load Balancers are associated with a WAF web ACL.",
        ("DDoS",),
        optional_parameters=("wafWebAclIds",),
    ),
    "api-gw-associated-with-waf": ManagedRule(
        "API_GW_ASSOCIATED_WITH_WAF",
        "API Gateway REST API stages are associated with a WAF web ACL.",
        ("DDoS",),
        optional_parameters=("WebAclArns",),
    ),
    "restricted-ssh": ManagedRule(
        "INCOMING_SSH_DISABLED",
        "Security groups do not allow SSH (22) from 0.0.0.0/0 or ::/0.",
        ("open SSH/RDP",),
        remediation=REVOKE_OPEN_ADMIN_PORTS,
    ),
    "restricted-rdp": ManagedRule(
        "RESTRICTED_INCOMING_TRAFFIC",
        "Security groups do not allow RDP (3389) from 0.0.0.0/0 or ::/0.",
        ("open SSH/RDP",),
        # RESTRICTED_INCOMING_TRAFFIC checks five ports, defaulting to 20, 21, 3389, 3306
        # and 4333 when a parameter is absent: every one is pinned to 3389, or a group
        # open only on 21 would be reported NON_COMPLIANT under this rule's name while
        # the fix (22/3389 only) has nothing to revoke.
        parameters={f"blockedPort{n}": "3389" for n in range(1, 6)},
        optional_parameters=("blockedPorts",),
        remediation=REVOKE_OPEN_ADMIN_PORTS,
    ),
    "cloudtrail-enabled": ManagedRule(
        "CLOUD_TRAIL_ENABLED",
        "A CloudTrail trail records this account's API calls.",
        ("CloudTrail turned off", "account id leak"),
        optional_parameters=("s3BucketName", "snsTopicArn", "cloudWatchLogsLogGroupArn"),
    ),
    "multi-region-cloudtrail-enabled": ManagedRule(
        "MULTI_REGION_CLOUD_TRAIL_ENABLED",
        "At least one multi-region trail records management events.",
        ("CloudTrail turned off",),
        optional_parameters=(
            "s3BucketName",
            "snsTopicArn",
            "cloudWatchLogsLogGroupArn",
            "includeManagementEvents",
            "readWriteType",
        ),
    ),
    "cloudfront-origin-access-identity-enabled": ManagedRule(
        "CLOUDFRONT_ORIGIN_ACCESS_IDENTITY_ENABLED",
        "CloudFront distributions reach S3 origins through an origin access identity "
        "(evaluated in us-east-1 only, where CloudFront is recorded).",
        ("website defacement", "data exposure"),
        enabled=False,
    ),
}

CATALOG: Mapping[str, ManagedRule] = MappingProxyType(_RULES)

# The custom Lambda rule the module adds beside the managed ones.
DANGLING_DNS_RULE = "dangling-dns"
DANGLING_DNS_THREATS = ("subdomain takeover",)


def terraform_catalog() -> dict[str, dict[str, object]]:
    """The catalog as the module's Terraform local (JSON), keyed by rule key."""
    return {
        key: {
            "source": rule.source,
            "parameters": dict(sorted(rule.parameters.items())),
            "enabled": rule.enabled,
            "remediation": rule.remediation or "",
        }
        for key, rule in sorted(CATALOG.items())
    }


def readme_table() -> list[str]:
    """The README's catalog table (markdown lines)."""
    lines = [
        "| rule (`<name_prefix>-` + key) | source identifier | threats | automatic fix | default |",
        "|---|---|---|---|---|",
    ]
    for key, rule in sorted(CATALOG.items()):
        fix = f"`{rule.remediation}`" if rule.remediation else "notify only"
        lines.append(
            f"| `{key}` | `{rule.source}` | {', '.join(rule.threats)} | {fix} | "
            f"{'on' if rule.enabled else 'off'} |"
        )
    lines.append(
        f"| `{DANGLING_DNS_RULE}` | custom Lambda (`dangling_dns`) | "
        f"{', '.join(DANGLING_DNS_THREATS)} | notify only | on |"
    )
    return lines
