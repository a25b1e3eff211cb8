# Root configuration for tests/terraform/test_apply_waf_shield.py: the generated
# waf_shield module applied into a moto server on 127.0.0.1.
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

variable "shield" {
  type        = bool
  description = "Plan Shield Advanced protections (moto has no Shield Advanced: plan only)."
  default     = false
}

variable "mitigate_unassociated" {
  type        = bool
  description = "Plan automatic mitigation for a resource without this web ACL (must fail)."
  default     = false
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  max_retries                 = 3
  endpoints {
    cloudwatch = var.endpoint
    dynamodb   = var.endpoint
    ec2        = var.endpoint
    elbv2      = var.endpoint
    events     = var.endpoint
    iam        = var.endpoint
    kms        = var.endpoint
    lambda     = var.endpoint
    logs       = var.endpoint
    shield     = var.endpoint
    sns        = var.endpoint
    sqs        = var.endpoint
    sts        = var.endpoint
    wafv2      = var.endpoint
  }
}

# moto rejects unknown layer ARNs: a stand-in layer (the function is never invoked in
# moto; the test runs the handler in-process).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "wafapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

# The consumer's own load balancer, created in the same apply: its ARN is unknown at plan,
# which is the normal case and must plan (for_each keys are the map's names).
data "aws_availability_zones" "here" {}

resource "aws_vpc" "this" {
  cidr_block = "10.43.0.0/16"
}

resource "aws_subnet" "web" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = "10.43.${count.index}.0/24"
  availability_zone = data.aws_availability_zones.here.names[count.index]
}

resource "aws_lb" "web" {
  name               = "wafapply-web"
  load_balancer_type = "application"
  subnets            = aws_subnet.web[*].id
}

# Where the remediator reports: a topic with a queue standing in for people.
resource "aws_sns_topic" "reports" {
  name = "wafapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "wafapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

module "waf_shield" {
  source = "../../../dist/modules/waf_shield"

  name_prefix          = "wafapply"
  allowlist_cidrs      = ["198.51.100.0/24", "2001:db8:100::/48", "45.155.205.0/24"]
  block_ttl_seconds    = 600
  notify_topic_arn     = aws_sns_topic.reports.arn
  powertools_layer_arn = aws_lambda_layer_version.powertools.arn
  rate_rules = [
    { name = "rate-per-ip", limit = 2000 },
    { name = "login", limit = 100, window = 60, uri_path_prefix = "/login" },
    { name = "edge-countries", limit = 500, aggregate = "FORWARDED_IP", country_codes = ["US", "DE"], action = "count" },
  ]
  managed_rule_groups = [
    { name = "AWSManagedRulesCommonRuleSet", rule_overrides_to_count = ["SizeRestrictions_BODY"] },
    { name = "AWSManagedRulesKnownBadInputsRuleSet" },
  ]
  associated_resource_arns  = { web = aws_lb.web.arn }
  create_shield_protections = var.shield
  shield_resource_arns = var.shield ? {
    web    = aws_lb.web.arn
    static = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/static/50dc6c495c0c9188"
  } : {}
  shield_automatic_mitigation = var.shield ? merge(
    { web = "count" },
    var.mitigate_unassociated ? { static = "block" } : {},
  ) : {}
  tags = { Team = "secops" }
}

output "web_acl_arn" {
  value = module.waf_shield.web_acl_arn
}

output "blocklist_ipv4_ip_set_arn" {
  value = module.waf_shield.blocklist_ipv4_ip_set_arn
}

output "blocklist_ipv6_ip_set_arn" {
  value = module.waf_shield.blocklist_ipv6_ip_set_arn
}

output "allowlist_ip_set_arns" {
  value = module.waf_shield.allowlist_ip_set_arns
}

output "log_group_arn" {
  value = module.waf_shield.log_group_arn
}

output "state_table_name" {
  value = module.waf_shield.state_table_name
}

output "waf_blocker_function_arn" {
  value = module.waf_shield.waf_blocker_function_arn
}

output "load_balancer_arn" {
  value = aws_lb.web.arn
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}
