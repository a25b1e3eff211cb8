"""What the forensics step function calls, so its role allows exactly that (see
functions.common.permissions). Symbolic resources are resolved by modules/forensics.py:

- ``describe``: ``*``. EC2, Auto Scaling, ELBv2 and SSM describe/list calls accept no
  resource-level scoping (the Service Authorization Reference lists none for them).
- ``ec2``: instances, volumes, snapshots, security groups, network interfaces, subnets and
  VPCs of this account and region (snapshots have no account in their ARN).
- ``auto_scaling_groups``: every Auto Scaling group of this account and region.
- ``target_groups``: every ELBv2 target group of this account and region.
- ``instance_profiles`` / ``instance_roles``: the profiles and roles the workflow may cut
  off (the module's ``instance_role_arns`` input; every role of the account by default).
- ``ssm_documents``: the module's two SSM documents; ``managed_instances``: the instances
  they run on.
- ``evidence_objects`` / ``evidence_bucket``: the module's evidence bucket.
- ``evidence_key``: the module's KMS key (evidence objects and snapshot copies).
"""

from __future__ import annotations

from functions.common import report
from functions.common.permissions import Permission

PERMISSIONS: tuple[Permission, ...] = (
    Permission("ec2:DescribeInstances", "describe", "read the instance, its volumes and ENIs"),
    Permission("ec2:DescribeVolumes", "describe", "read each volume before snapshotting it"),
    Permission("ec2:DescribeSnapshots", "describe", "find the case's snapshots (re-runs)"),
    Permission("ec2:DescribeSecurityGroups", "describe", "find the isolation groups"),
    Permission("ec2:DescribeSubnets", "describe", "find the forensics subnet in the instance's AZ"),
    Permission(
        "ec2:DescribeNetworkInterfaces",
        "describe",
        "read each ENI's groups; find the forensics ENI",
    ),
    Permission(
        "ec2:DescribeIamInstanceProfileAssociations",
        "describe",
        "find the instance profile to disassociate",
    ),
    Permission("ec2:CreateTags", "ec2", "record each step on the instance; tag snapshots"),
    Permission(
        "ec2:ModifyInstanceAttribute",
        "ec2",
        "termination and stop protection; DeleteOnTermination false on volumes",
    ),
    Permission("ec2:CreateSnapshot", "ec2", "snapshot every attached volume"),
    Permission("ec2:CopySnapshot", "ec2", "copy snapshots with the evidence key when asked"),
    Permission(
        "ec2:DisassociateIamInstanceProfile", "ec2", "stop the instance getting credentials"
    ),
    Permission("ec2:CreateSecurityGroup", "ec2", "create the allow-all and isolation groups"),
    Permission("ec2:AuthorizeSecurityGroupIngress", "ec2", "the allow-all group's inbound rules"),
    Permission("ec2:AuthorizeSecurityGroupEgress", "ec2", "the allow-all group's IPv6 egress"),
    Permission(
        "ec2:RevokeSecurityGroupEgress", "ec2", "remove the default egress of the isolation group"
    ),
    Permission(
        "ec2:ModifyNetworkInterfaceAttribute", "ec2", "swap (and restore) each ENI's groups"
    ),
    Permission("ec2:CreateNetworkInterface", "ec2", "the investigators' forensics ENI"),
    Permission("ec2:AttachNetworkInterface", "ec2", "attach the forensics ENI"),
    Permission("ec2:TerminateInstances", "ec2", "terminate, once the evidence is kept"),
    Permission("autoscaling:DescribeAutoScalingInstances", "describe", "find the instance's group"),
    Permission(
        "autoscaling:DetachInstances",
        "auto_scaling_groups",
        "take the instance out of its group without lowering desired capacity",
    ),
    Permission("elasticloadbalancing:DescribeTargetGroups", "describe", "list the target groups"),
    Permission(
        "elasticloadbalancing:DescribeTargetHealth", "describe", "find the instance's targets"
    ),
    Permission(
        "elasticloadbalancing:DeregisterTargets",
        "target_groups",
        "stop load balancers sending traffic to the instance",
    ),
    Permission("iam:GetInstanceProfile", "instance_profiles", "find the profile's roles"),
    Permission("iam:GetRolePolicy", "instance_roles", "read an earlier session revocation"),
    Permission("iam:PutRolePolicy", "instance_roles", "revoke the role's older sessions"),
    Permission("ssm:DescribeInstanceInformation", "describe", "is the instance managed by SSM?"),
    Permission("ssm:SendCommand", "ssm_documents", "run the volatile-evidence documents"),
    Permission("ssm:SendCommand", "managed_instances", "on the instance under isolation"),
    Permission("ssm:GetCommandInvocation", "describe", "follow the evidence commands"),
    Permission("s3:PutObject", "evidence_objects", "write evidence, step records and reports"),
    Permission(
        "s3:GetObject", "evidence_objects", "read step records; check evidence and its sha256"
    ),
    Permission(
        "s3:ListBucket", "evidence_bucket", "tell a missing evidence object from a denied read"
    ),
    Permission("kms:GenerateDataKey", "evidence_key", "write KMS-encrypted evidence"),
    Permission("kms:Decrypt", "evidence_key", "read evidence back to check it"),
    Permission("kms:CreateGrant", "evidence_key", "EBS encrypts snapshot copies with the key"),
    Permission("kms:DescribeKey", "evidence_key", "EBS checks the key of a snapshot copy"),
    Permission("kms:ReEncryptFrom", "evidence_key", "EBS re-encrypts snapshot copies"),
    Permission("kms:ReEncryptTo", "evidence_key", "EBS re-encrypts snapshot copies"),
    Permission("sns:Publish", "notify_topic", "notify with the step report"),
    Permission(
        "kms:GenerateDataKey", "notify_kms_key", "publish to the KMS-encrypted notify topic"
    ),
    Permission("kms:Decrypt", "notify_kms_key", "publish to the KMS-encrypted notify topic"),
    report.PUT_EVENTS,
)
