"""The incident_response part of the local demo: two Security Hub custom actions answered.

In-process moto stands in for IAM and SNS: a user with two access keys and an instance
role. The two findings in bundle/demo_findings/response/ (a GuardDuty IAM finding naming
the user's key, and an instance-credential exfiltration naming the role's temporary key)
arrive as "Security Hub Findings - Custom Action" events for Disable Access Keys and Revoke
Sessions; the real responder handler answers them. moto has no Security Hub
BatchUpdateFindings, so the request the responder sends is captured by a botocore hook and
its note printed, as Security Hub would show it on the finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from bundle.motoserver import FAKE_CREDENTIALS, InProcessContext, scoped_environ

FINDINGS = Path(__file__).resolve().parent / "demo_findings" / "response"
REGION = "us-east-1"
ACTION_ARNS = {
    "disable": f"arn:aws:securityhub:{REGION}:111122223333:action/custom/DisableAccessKeys",
    "revoke": f"arn:aws:securityhub:{REGION}:111122223333:action/custom/RevokeSessions",
}


@dataclass
class Answer:
    action: str
    finding_title: str
    outcome: str
    did: list[str]
    note: str
    workflow: str


@dataclass
class Response:
    answers: list[Answer] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


def run() -> Response:
    response = Response()
    updates: list[dict[str, Any]] = []

    def batch_update_findings(params: dict[str, Any], **_: Any) -> Any:
        updates.append(json.loads(params.get("body") or b"{}"))
        answer: dict[str, list[Any]] = {"ProcessedFindings": [], "UnprocessedFindings": []}
        return AWSResponse(f"https://securityhub.{REGION}.amazonaws.com", 200, {}, None), answer

    settings = {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # The demo prints what happened; the handler's JSON log lines would repeat it.
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with scoped_environ(settings), mock_aws():
        from functions.common import aws
        from functions.responder import handler

        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName="ci-deployer")
        leaked, _spare = (
            iam.create_access_key(UserName="ci-deployer")["AccessKey"]["AccessKeyId"]
            for _ in range(2)
        )
        iam.create_role(
            RoleName="web-instance-role",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="demo-high")["TopicArn"]
        queue = sqs.create_queue(QueueName="demo-reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        environment = {
            "DISABLE_ACCESS_KEYS_ACTION_ARN": ACTION_ARNS["disable"],
            "REVOKE_SESSIONS_ACTION_ARN": ACTION_ARNS["revoke"],
            "AUTOMATIC_FINDING_TYPES": "[]",
            "DRY_RUN": "false",
            "NOTIFY_TOPIC_ARN": topic,
        }
        disable = json.loads((FINDINGS / "1-disable-access-keys.json").read_text())
        disable["detail"]["findings"][0]["Resources"][0]["Id"] = f"AWS::IAM::AccessKey:{leaked}"
        revoke = json.loads((FINDINGS / "2-revoke-sessions.json").read_text())
        context: Any = InProcessContext.of(
            f"arn:aws:lambda:{REGION}:111122223333:function:demo-responder"
        )
        aws.reset()
        aws.session().events.register(
            "before-call.securityhub.BatchUpdateFindings",
            batch_update_findings,
            unique_id="demo-batch-update-findings",
        )
        try:
            with scoped_environ(environment):
                for event in (disable, revoke):
                    result = handler.lambda_handler(event, context)
                    (outcome,) = result["findings"]
                    update = updates[-1]
                    response.answers.append(
                        Answer(
                            action=event["detail"]["actionName"],
                            finding_title=event["detail"]["findings"][0]["Title"],
                            outcome=outcome["status"],
                            did=outcome["actions"] or [outcome.get("reason", "")],
                            note=update["Note"]["Text"],
                            workflow=update.get("Workflow", {}).get("Status", "(unchanged)"),
                        )
                    )
        finally:
            aws.reset()
        keys = iam.list_access_keys(UserName="ci-deployer")["AccessKeyMetadata"]
        response.after += [
            f"access key {k['AccessKeyId']} of ci-deployer: {k['Status']}"
            + (" (the leaked one)" if k["AccessKeyId"] == leaked else "")
            for k in sorted(keys, key=lambda k: k["AccessKeyId"] != leaked)
        ]
        policy = iam.get_role_policy(
            RoleName="web-instance-role", PolicyName="AWSRevokeOlderSessions"
        )["PolicyDocument"]["Statement"][0]
        cutoff = policy["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        response.after.append(
            f"role web-instance-role: inline policy AWSRevokeOlderSessions denies "
            f"{policy['Action']} to sessions issued before {cutoff}"
        )
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        response.reports = [
            json.loads(json.loads(m["Body"])["Message"])["detail"]["title"]
            for m in messages.get("Messages", [])
        ]
    return response


def lines(response: Response) -> list[str]:
    """What the demo prints, one line each (main.py adds the rule and the styling)."""
    out = []
    for number, answer in enumerate(response.answers, 1):
        out.append(f"{number}. {answer.action} on: {answer.finding_title}")
        out += [f"   {answer.outcome}: {line}" for line in answer.did]
        out.append(f"   Security Hub note: {answer.note}")
        out.append(f"   Security Hub workflow: {answer.workflow}")
    out += ["After:", *(f"   {line}" for line in response.after)]
    out += ["Reports sent:", *(f"   {title}" for title in response.reports)]
    return out
