"""Version constraints written into every generated module and stack."""

# Generated modules must work with the hashicorp/aws 5.100 mirror on build machines and
# with the 6.x provider cdktn-provider-aws is generated from; use only arguments 5.100
# validates.
AWS_PROVIDER_CONSTRAINT = ">= 5.100, < 7.0"
# Modules use nothing newer than 1.5 (variable validation, try(), optional nullable).
TERRAFORM_CONSTRAINT = ">= 1.5.0"
# Root stacks lock state with the S3 backend's native lock file (use_lockfile), 1.10+.
STACK_TERRAFORM_CONSTRAINT = ">= 1.10.0"
# What cdktn validates features against (its own default targets 1.5.7).
CDKTN_TARGET_VERSIONS = {"terraform": ">=1.10.0", "opentofu": ">=1.10.0"}
