# Root configuration for tests/terraform/test_apply_incident_response.py: the generated
# incident_response module applied into a moto server on 127.0.0.1, beside a user with a
# key and a role for the responder to act on, a stand-in notifier for the Send actions and
# a topic whose reports an SQS queue collects. moto has no Security Hub action targets,
# so they are planned (create_action_targets), not applied.
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

variable "create_action_targets" {
  type        = bool
  description = "Planned true by the test; applied false (moto lacks action targets)."
  default     = false
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  # Security Hub calls against moto hang in retries: fail fast instead.
  max_retries = 1
  endpoints {
    cloudwatch  = var.endpoint
    events      = var.endpoint
    iam         = var.endpoint
    kms         = var.endpoint
    lambda      = var.endpoint
    logs        = var.endpoint
    securityhub = var.endpoint
    sns         = var.endpoint
    sqs         = var.endpoint
    sts         = var.endpoint
  }
}

# moto rejects unknown layer ARNs: a stand-in layer (moto never runs the function; the
# test runs the handler in-process with the applied function's environment).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "irapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_iam_user" "leaked" {
  name = "irapply-ci-deployer"
}

resource "aws_iam_access_key" "leaked" {
  user = aws_iam_user.leaked.name
}

resource "aws_iam_role" "web" {
  name = "irapply-web"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

# The notifications module's notifier, as far as this module cares: a function to invoke.
resource "aws_iam_role" "notifier" {
  name = "irapply-notifier"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "lambda.amazonaws.com" } }]
  })
}

resource "aws_lambda_function" "notifier" {
  function_name = "irapply-notifier"
  role          = aws_iam_role.notifier.arn
  runtime       = "python3.12"
  handler       = "functions.notifier.handler.lambda_handler"
  filename      = "${path.module}/../../../dist/modules/notifications/function.zip"
}

resource "aws_sns_topic" "reports" {
  name = "irapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "irapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

module "incident_response" {
  source = "../../../dist/modules/incident_response"

  name_prefix                = "irapply"
  create_action_targets      = var.create_action_targets
  notifier_function_arn      = aws_lambda_function.notifier.arn
  chat_audience              = "#incident-response"
  create_automatic_responses = true
  user_arns                  = [aws_iam_user.leaked.arn]
  role_arns                  = [aws_iam_role.web.arn]
  notify_topic_arn           = aws_sns_topic.reports.arn
  powertools_layer_arn       = aws_lambda_layer_version.powertools.arn
  kms_deletion_window_days   = 7
}

output "access_key_id" {
  value = aws_iam_access_key.leaked.id
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}

output "action_arns" {
  value = module.incident_response.action_arns
}

output "block_ip_action_arn" {
  value = module.incident_response.block_ip_action_arn
}

output "isolate_action_arn" {
  value = module.incident_response.isolate_action_arn
}

output "terminate_action_arn" {
  value = module.incident_response.terminate_action_arn
}

output "responder_function_arn" {
  value = module.incident_response.responder_function_arn
}

output "event_rule_arns" {
  value = module.incident_response.event_rule_arns
}
