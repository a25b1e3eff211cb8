# Root configuration for tests/terraform/test_apply_threat_lists.py: the generated
# threat_lists module applied into a moto server on 127.0.0.1 with a detector it creates.
# moto has no GuardDuty threat intel sets or IP sets: the test applies with no feeds,
# manual entries or trusted ranges (so none is created) and plans them with -var.
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

variable "feeds" {
  type        = any
  description = "Feeds the test plans with (moto cannot create threat intel sets)."
  default     = []
}

variable "manual_entries" {
  type        = list(string)
  description = "Manual entries the test plans with."
  default     = []
}

variable "trusted_cidrs" {
  type        = list(string)
  description = "Trusted ranges the test plans with (moto cannot create IP sets)."
  default     = []
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  max_retries                 = 2
  endpoints {
    cloudwatch     = var.endpoint
    events         = var.endpoint
    guardduty      = var.endpoint
    iam            = var.endpoint
    kms            = var.endpoint
    lambda         = var.endpoint
    logs           = var.endpoint
    s3             = var.endpoint
    secretsmanager = var.endpoint
    sns            = var.endpoint
    sqs            = var.endpoint
    sts            = var.endpoint
  }
}

# moto rejects unknown layer ARNs: a stand-in layer (the function is never invoked in
# moto; the test runs the handler in-process).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "tlapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_sns_topic" "reports" {
  name = "tlapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "tlapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

module "threat_lists" {
  source = "../../../dist/modules/threat_lists"

  name_prefix               = "tlapply"
  create_detector           = true
  feeds                     = var.feeds
  manual_entries            = var.manual_entries
  trusted_cidrs             = var.trusted_cidrs
  allowlist_cidrs           = ["185.220.100.0/24"]
  cap_policy                = "truncate"
  list_bucket_force_destroy = true
  notify_topic_arn          = aws_sns_topic.reports.arn
  powertools_layer_arn      = aws_lambda_layer_version.powertools.arn
}

output "detector_id" {
  value = module.threat_lists.guardduty_detector_id
}

output "list_bucket_name" {
  value = module.threat_lists.list_bucket_name
}

output "kms_key_arn" {
  value = module.threat_lists.kms_key_arn
}

output "threat_feed_function_arn" {
  value = module.threat_lists.threat_feed_function_arn
}

output "threat_intel_set_ids" {
  value = module.threat_lists.threat_intel_set_ids
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}
