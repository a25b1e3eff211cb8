"""What the dangling_dns rule function calls, so its role allows exactly that (see
functions.common.permissions). Symbolic resources are resolved by modules/config_rules.py:

- ``describe``: ``*``. The list/describe calls below and config:PutEvaluations accept no
  resource-level scoping (the Service Authorization Reference lists none for them).
- ``hosted_zones``: every Route 53 hosted zone of the account.
- ``config_rules``: the account's Config rules in this region (the rule's own ARN cannot
  be named: the rule refers to the function, so the function's policy cannot refer back).
"""

from __future__ import annotations

from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission("route53:ListHostedZones", "describe", "every hosted zone is evaluated"),
    Permission("route53:ListResourceRecordSets", "hosted_zones", "read CNAME, alias and A records"),
    Permission("s3:ListAllMyBuckets", "describe", "which S3 website buckets exist"),
    Permission("cloudfront:ListDistributions", "describe", "which distributions exist"),
    Permission(
        "elasticbeanstalk:DescribeEnvironments", "describe", "which Beanstalk environments exist"
    ),
    Permission("elasticloadbalancing:DescribeLoadBalancers", "describe", "which ALB/NLB/CLB exist"),
    Permission("ec2:DescribeAddresses", "describe", "which Elastic IPs the account holds"),
    Permission("config:PutEvaluations", "describe", "report each hosted zone's compliance"),
    Permission(
        "config:StartConfigRulesEvaluation",
        "config_rules",
        "evaluate at once after a Route 53 change",
    ),
)
