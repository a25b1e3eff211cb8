# Root configuration for tests/terraform/test_apply_nacl_blocklist.py: the generated
# nacl_blocklist module applied into a moto server on 127.0.0.1, guarding one network
# ACL by id and another through its subnet.
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

variable "extra_network_acl_ids" {
  type        = list(string)
  description = "ACL ids the test adds to plan a mistake (one that exists nowhere)."
  default     = []
}

variable "extra_subnet_ids" {
  type        = list(string)
  description = "Subnet ids the test adds to plan a mistake (one that exists nowhere)."
  default     = []
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
    events     = var.endpoint
    iam        = var.endpoint
    kms        = var.endpoint
    lambda     = var.endpoint
    logs       = var.endpoint
    sns        = var.endpoint
    sqs        = var.endpoint
    sts        = var.endpoint
  }
}

# moto rejects unknown layer ARNs: a stand-in layer (the function is never invoked in
# moto; the test runs the handler in-process).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "naclapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_vpc" "this" {
  cidr_block                       = "10.42.0.0/16"
  assign_generated_ipv6_cidr_block = true
}

resource "aws_subnet" "web" {
  vpc_id     = aws_vpc.this.id
  cidr_block = "10.42.1.0/24"
}

resource "aws_subnet" "data" {
  vpc_id     = aws_vpc.this.id
  cidr_block = "10.42.2.0/24"
}

# Guarded by id.
resource "aws_network_acl" "web" {
  vpc_id     = aws_vpc.this.id
  subnet_ids = [aws_subnet.web.id]
}

# Guarded through its subnet (resolved by the module at plan time).
resource "aws_network_acl" "data" {
  vpc_id     = aws_vpc.this.id
  subnet_ids = [aws_subnet.data.id]
}

# The ACLs' own rules, outside the reserved range: the remediator must leave them be.
resource "aws_network_acl_rule" "web_allow" {
  network_acl_id = aws_network_acl.web.id
  rule_number    = 100
  egress         = false
  protocol       = "-1"
  rule_action    = "allow"
  cidr_block     = "0.0.0.0/0"
}

resource "aws_sns_topic" "reports" {
  name = "naclapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "naclapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

module "nacl_blocklist" {
  source = "../../../dist/modules/nacl_blocklist"

  name_prefix          = "naclapply"
  network_acl_ids      = concat([aws_network_acl.web.id], var.extra_network_acl_ids)
  subnet_ids           = concat([aws_subnet.data.id], var.extra_subnet_ids)
  rule_number_start    = 10
  rule_number_end      = 14
  capacity             = 3
  egress_enabled       = true
  allowlist_cidrs      = ["45.155.205.0/24"]
  block_ttl_seconds    = 600
  notify_topic_arn     = aws_sns_topic.reports.arn
  powertools_layer_arn = aws_lambda_layer_version.powertools.arn

  # The data source reads the subnet's association, so it must exist first.
  depends_on = [aws_network_acl.data]
}

output "web_acl_id" {
  value = aws_network_acl.web.id
}

output "data_acl_id" {
  value = aws_network_acl.data.id
}

output "guarded_network_acl_ids" {
  value = module.nacl_blocklist.guarded_network_acl_ids
}

output "state_table_name" {
  value = module.nacl_blocklist.state_table_name
}

output "nacl_blocker_function_arn" {
  value = module.nacl_blocklist.nacl_blocker_function_arn
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}
