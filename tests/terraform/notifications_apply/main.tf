# Root configuration for tests/terraform/test_apply_notifications.py: the generated
# notifications module applied into a moto server on 127.0.0.1.
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
  description = "The moto server, e.g. http://127.0.0.1:5000 (set by the test as TF_VAR_endpoint)."
}

variable "webhook_urls" {
  type        = map(string)
  description = "Chat webhook URLs of the test's local receiver (set by the test)."
}

variable "layer_zip" {
  type        = string
  description = "Path of the stand-in layer zip written by the test."
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
    cloudwatch     = var.endpoint
    events         = var.endpoint
    iam            = var.endpoint
    kms            = var.endpoint
    lambda         = var.endpoint
    logs           = var.endpoint
    secretsmanager = var.endpoint
    sns            = var.endpoint
    sqs            = var.endpoint
    sts            = var.endpoint
  }
}

# moto holds no AWS-published layers and rejects unknown layer ARNs, so the test
# publishes a layer version of its own and hands its ARN to the module. The function is
# never invoked inside moto (that needs Docker); the test runs the handler in-process.
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "pbtest-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_secretsmanager_secret" "webhooks" {
  name                    = "pbtest/notifier-webhooks"
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "webhooks" {
  secret_id     = aws_secretsmanager_secret.webhooks.id
  secret_string = jsonencode(var.webhook_urls)
}

# A landing zone's permissions boundary, which every role of the module must carry.
resource "aws_iam_policy" "boundary" {
  name = "pbtest-boundary"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "*", Resource = "*" }]
  })
}

module "notifications" {
  source = "../../../dist/modules/notifications"

  name_prefix          = "pbtest"
  email_addresses      = ["secops@example.com"]
  webhook_secret_name  = aws_secretsmanager_secret.webhooks.name
  powertools_layer_arn = aws_lambda_layer_version.powertools.arn
  reserved_concurrency = 3
  tags                 = { Team = "secops" }

  iam_role_path                = "/security/playbook/"
  iam_permissions_boundary_arn = aws_iam_policy.boundary.arn
}

# No https_endpoints here: moto POSTs to https subscribers itself on every publish, and
# tests send nothing off this machine. The synth and validate layers cover them.

# Subscribers standing in for people: one on the high topic (what EventBridge delivers),
# one on the e-mail topic (what the notifier writes).
resource "aws_sqs_queue" "high_subscriber" {
  name = "pbtest-high-subscriber"
}

resource "aws_sqs_queue" "email_subscriber" {
  name = "pbtest-email-subscriber"
}

resource "aws_sns_topic_subscription" "high_subscriber" {
  topic_arn = module.notifications.topic_arns["high"]
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.high_subscriber.arn
}

resource "aws_sns_topic_subscription" "email_subscriber" {
  topic_arn            = module.notifications.email_topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.email_subscriber.arn
  raw_message_delivery = true
}

output "topic_arns" {
  value = module.notifications.topic_arns
}

output "email_topic_arn" {
  value = module.notifications.email_topic_arn
}

output "kms_key_arn" {
  value = module.notifications.kms_key_arn
}

output "notifier_function_arn" {
  value = module.notifications.notifier_function_arn
}

output "notifier_dlq_arn" {
  value = module.notifications.notifier_dlq_arn
}

output "event_rule_arns" {
  value = module.notifications.event_rule_arns
}

output "boundary_arn" {
  value = aws_iam_policy.boundary.arn
}

output "high_subscriber_url" {
  value = aws_sqs_queue.high_subscriber.url
}

output "email_subscriber_url" {
  value = aws_sqs_queue.email_subscriber.url
}
