# Root configuration for tests/terraform/test_apply_config_rules.py: the generated
# config_rules module applied into a moto server on 127.0.0.1 with its recorder, delivery
# channel and bucket, the catalog rules (two re-parameterised, one turned on, one off) and
# the dangling-dns rule, beside a security group and a bucket for the remediator to fix.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

variable "endpoint" {
  type        = string
  description = "The moto server (set by the test as TF_VAR_endpoint)."
}

variable "layer_zip" {
  type        = string
  description = "Path of the stand-in layer zip written by the test."
}

variable "organization_rules" {
  type        = bool
  description = "Planned (never applied) as true: moto has no PutOrganizationConfigRule."
  default     = false
}

variable "extra_rules" {
  type        = any
  description = "Rule overrides the test adds to plan a mistake."
  default     = {}
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  max_retries                 = 2
  endpoints {
    cloudwatch = var.endpoint
    config     = var.endpoint
    ec2        = var.endpoint
    events     = var.endpoint
    iam        = var.endpoint
    kms        = var.endpoint
    lambda     = var.endpoint
    logs       = var.endpoint
    s3         = var.endpoint
    sns        = var.endpoint
    sqs        = var.endpoint
    sts        = var.endpoint
  }
  s3_use_path_style = true
}

# moto rejects unknown layer ARNs: a stand-in layer (the functions are never invoked in
# moto; the test runs the handlers in-process).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "cfgapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_sns_topic" "reports" {
  name = "cfgapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "cfgapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

resource "aws_vpc" "this" {
  cidr_block = "10.52.0.0/16"
}

# World SSH beside an office range and world HTTPS: only the first may go.
resource "aws_security_group" "web" {
  name        = "cfgapply-web"
  description = "web servers"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "web_ssh_world" {
  security_group_id = aws_security_group.web.id
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "web_ssh_office" {
  security_group_id = aws_security_group.web.id
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = "198.51.100.0/24"
}

resource "aws_vpc_security_group_ingress_rule" "web_https" {
  security_group_id = aws_security_group.web.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

module "config_rules" {
  source = "../../../dist/modules/config_rules"

  name_prefix                   = "cfgapply"
  create_recorder               = true
  delivery_bucket_force_destroy = true
  organization_rules            = var.organization_rules
  rules = merge({
    "restricted-ssh"      = { auto_remediate = true }
    "access-keys-rotated" = { parameters = { maxAccessKeyAge = "45" } }
    "approved-amis-by-id" = { enabled = true, parameters = { amiIds = "ami-0123456789abcdef0" } }
    "alb-waf-enabled"     = { enabled = false }
  }, var.extra_rules)
  notify_topic_arn     = aws_sns_topic.reports.arn
  powertools_layer_arn = aws_lambda_layer_version.powertools.arn
}

output "web_group_id" {
  value = aws_security_group.web.id
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}

output "config_rule_arns" {
  value = module.config_rules.config_rule_arns
}

output "dangling_dns_rule_arn" {
  value = module.config_rules.dangling_dns_rule_arn
}

output "config_remediator_function_arn" {
  value = module.config_rules.config_remediator_function_arn
}

output "dangling_dns_function_arn" {
  value = module.config_rules.dangling_dns_function_arn
}

output "recorder_name" {
  value = module.config_rules.recorder_name
}

output "delivery_bucket_name" {
  value = module.config_rules.delivery_bucket_name
}

output "event_rule_arn" {
  value = module.config_rules.event_rule_arn
}
