# Root configuration for tests/terraform/test_apply_forensics.py: the generated forensics
# module applied into a moto server on 127.0.0.1, beside an instance to isolate (with an
# instance profile) and a topic whose reports an SQS queue collects.
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

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  max_retries                 = 3
  endpoints {
    cloudwatch = var.endpoint
    ec2        = var.endpoint
    events     = var.endpoint
    iam        = var.endpoint
    kms        = var.endpoint
    lambda     = var.endpoint
    logs       = var.endpoint
    s3         = var.endpoint
    sfn        = var.endpoint
    sns        = var.endpoint
    sqs        = var.endpoint
    ssm        = var.endpoint
    sts        = var.endpoint
  }
}

# moto rejects unknown layer ARNs: a stand-in layer (moto never runs the function; the
# test routes its invocations to the handler in-process).
resource "aws_lambda_layer_version" "powertools" {
  layer_name          = "forensicsapply-powertools-stand-in"
  filename            = var.layer_zip
  compatible_runtimes = ["python3.12"]
}

resource "aws_vpc" "this" {
  cidr_block = "10.43.0.0/16"
}

resource "aws_subnet" "workload" {
  vpc_id            = aws_vpc.this.id
  cidr_block        = "10.43.1.0/24"
  availability_zone = "us-east-1a"
}

resource "aws_security_group" "web" {
  name   = "forensicsapply-web"
  vpc_id = aws_vpc.this.id
}

resource "aws_iam_role" "web" {
  name = "forensicsapply-web"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_instance_profile" "web" {
  name = "forensicsapply-web"
  role = aws_iam_role.web.name
}

# moto ships this Amazon Linux image id among its default images.
resource "aws_instance" "web" {
  ami                    = "ami-760aaa0f"
  instance_type          = "t3.micro"
  subnet_id              = aws_subnet.workload.id
  vpc_security_group_ids = [aws_security_group.web.id]
  iam_instance_profile   = aws_iam_instance_profile.web.name
}

resource "aws_sns_topic" "reports" {
  name = "forensicsapply-reports"
}

resource "aws_sqs_queue" "reports" {
  name = "forensicsapply-reports-subscriber"
}

resource "aws_sns_topic_subscription" "reports" {
  topic_arn = aws_sns_topic.reports.arn
  protocol  = "sqs"
  endpoint  = aws_sqs_queue.reports.arn
}

module "forensics" {
  source = "../../../dist/modules/forensics"

  name_prefix                   = "forensicsapply"
  evidence_retention_days       = 1
  evidence_bucket_force_destroy = true
  create_guardduty_rule         = true
  isolate_action_arn            = "arn:aws:securityhub:us-east-1:123456789012:action/custom/IsolateInstance"
  terminate_action_arn          = "arn:aws:securityhub:us-east-1:123456789012:action/custom/TerminateInstance"
  instance_role_arns            = [aws_iam_role.web.arn]
  notify_topic_arn              = aws_sns_topic.reports.arn
  powertools_layer_arn          = aws_lambda_layer_version.powertools.arn
}

output "instance_id" {
  value = aws_instance.web.id
}

output "web_group_id" {
  value = aws_security_group.web.id
}

output "reports_url" {
  value = aws_sqs_queue.reports.url
}

output "state_machine_arn" {
  value = module.forensics.state_machine_arn
}

output "evidence_bucket_name" {
  value = module.forensics.evidence_bucket_name
}

output "forensics_function_arn" {
  value = module.forensics.forensics_function_arn
}

output "event_rule_arns" {
  value = module.forensics.event_rule_arns
}

output "evidence_writer_policy_arn" {
  value = module.forensics.evidence_writer_policy_arn
}
