"""Root stacks: one per (account, region), composing the generated modules."""

from __future__ import annotations

from cdktn import S3Backend, TerraformHclModule, TerraformOutput, TerraformStack
from cdktn_provider_aws.provider import (
    AwsProvider,
    AwsProviderAssumeRole,
    AwsProviderDefaultTags,
)
from constructs import Construct

from bundle.environments import Stack

SESSION_NAME = "playbook-as-code"


class EnvironmentStack(TerraformStack):
    """Provider with assume_role and default_tags, S3 backend, and one call per module."""

    def __init__(self, scope: Construct, stack: Stack) -> None:
        super().__init__(scope, stack.name)
        AwsProvider(
            self,
            "aws",
            region=stack.region,
            allowed_account_ids=[stack.account.id],
            assume_role=[
                AwsProviderAssumeRole(role_arn=stack.account.role_arn, session_name=SESSION_NAME)
            ],
            default_tags=[
                AwsProviderDefaultTags(
                    tags={
                        **dict(sorted(stack.tags.items())),
                        "Environment": stack.environment,
                        "ManagedBy": "playbook-as-code",
                    }
                )
            ],
        )
        S3Backend(
            self,
            bucket=stack.backend.bucket,
            key=stack.state_key,
            region=stack.backend.region,
            encrypt=True,
            use_lockfile=True,
        )
        from modules import REGISTRY

        for name, parameters in sorted(stack.modules.items()):
            module = TerraformHclModule(
                self,
                name,
                source=stack.module_source(name, f"../../../modules/{name}"),
                skip_asset_creation_from_local_modules=True,
                variables=dict(sorted(parameters.items())),
            )
            for output in REGISTRY[name].outputs:
                TerraformOutput(
                    self,
                    f"{name}_{output.name}",
                    value=module.get(output.name),
                    description=output.description,
                )
