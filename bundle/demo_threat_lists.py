"""The threat lists part of the local demo: a feed served from 127.0.0.1 becomes a
GuardDuty threat list in the module's bucket.

A moto server on 127.0.0.1 stands in for AWS. The generated threat_lists module is applied
to it with the real Terraform CLI and AWS provider (bucket, KMS key, detector, the
threat_feed Lambda; moto has no GuardDuty threat intel sets, so the demo applies the
module without feeds and gives the in-process updater the feed and the set's id and
location itself). A local HTTP server serves a feed with good, duplicate, adjacent,
private, allow-listed and malformed entries; the real updater fetches it (plain http is
allowed for loopback only, through THREAT_FEED_ALLOW_HTTP_LOOPBACK, as in the tests),
normalises it, writes the list to the applied bucket with the module's key, and sends
UpdateThreatIntelSet, which moto lacks: a botocore Stubber stands in for GuardDuty and
records the request. A second run on the unchanged feed shows the conditional GET (304)
and no write. The demo prints the counts per reason, the list written and the request.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.demo import _run
from bundle.feedserver import feed_server
from bundle.motoserver import InProcessContext, moto_server, pointed_at, scoped_environ
from bundle.motoworkflow import bucket_policies_over_tls
from bundle.paths import DIST

PREFIX = "demo"
FEED_NAME = "incidents"
SET_ID = "5eb2c3c0a1d34e0f9b7a6c5d4e3f2a1b"
SERVICES = (
    "cloudwatch", "events", "guardduty", "iam", "kms", "lambda", "logs", "s3",
    "secretsmanager", "sns", "sqs", "sts",
)  # fmt: skip
ALLOWLIST = "185.220.100.0/24"
FEED = """\
# Addresses seen in incident IR-2025-041, one per line (served from 127.0.0.1)
185.220.101.7      # the SSH brute force of the custom-list finding
185.220.101.7
185.220.101.6/31
91.92.240.5
45.155.205.0/25
45.155.205.128/25
2a0e:1c80:1::7
185.220.100.9      # our own scanner: allow-listed
10.0.0.1
169.254.169.254
198.51.100.23
not-an-address
45.155.205.1/24
"""


@dataclass
class FeedUpdate:
    counts: dict[str, int] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)
    outcome: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    second_outcome: str = ""
    conditional: str = ""
    versions: int = 0
    report_title: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def root_configuration(directory: Path, endpoint: str, layer_zip: Path) -> None:
    config = {
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws"}}},
        "provider": {
            "aws": {
                "region": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "skip_credentials_validation": True,
                "skip_metadata_api_check": True,
                "s3_use_path_style": True,
                "max_retries": 2,
                "endpoints": {service: endpoint for service in SERVICES},
            }
        },
        "resource": {
            # moto rejects unknown layer ARNs, so the demo publishes a stand-in layer.
            "aws_lambda_layer_version": {
                "powertools": {
                    "layer_name": f"{PREFIX}-threat-lists-powertools-stand-in",
                    "filename": str(layer_zip),
                    "compatible_runtimes": ["python3.12"],
                }
            },
            "aws_sns_topic": {"reports": {"name": f"{PREFIX}-threat-lists-reports"}},
            "aws_sqs_queue": {"reports": {"name": f"{PREFIX}-threat-lists-inbox"}},
            "aws_sns_topic_subscription": {
                "reports": {
                    "topic_arn": "${aws_sns_topic.reports.arn}",
                    "protocol": "sqs",
                    "endpoint": "${aws_sqs_queue.reports.arn}",
                }
            },
        },
        "module": {
            "threat_lists": {
                "source": str(DIST / "modules" / "threat_lists"),
                "name_prefix": PREFIX,
                "create_detector": True,
                "allowlist_cidrs": [ALLOWLIST],
                "list_bucket_force_destroy": True,
                "notify_topic_arn": "${aws_sns_topic.reports.arn}",
                "powertools_layer_arn": "${aws_lambda_layer_version.powertools.arn}",
            }
        },
        "output": {
            "function_arn": {"value": "${module.threat_lists.threat_feed_function_arn}"},
            "bucket": {"value": "${module.threat_lists.list_bucket_name}"},
            "detector_id": {"value": "${module.threat_lists.guardduty_detector_id}"},
            "reports_url": {"value": "${aws_sqs_queue.reports.url}"},
        },
    }
    (directory / "main.tf.json").write_text(json.dumps(config, indent=2))


def run(progress: Callable[[str], None] = lambda _: None) -> FeedUpdate:
    """Apply, update the list from the local feed twice, show it, destroy."""
    import boto3
    from botocore.stub import Stubber

    with scoped_environ({"POWERTOOLS_LOG_LEVEL": "WARNING"}):
        from functions.common import aws
        from functions.threat_feed import handler

    result = FeedUpdate()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="playbook-demo-")))
        server = stack.enter_context(moto_server())
        stack.enter_context(pointed_at(server.endpoint))
        stack.enter_context(bucket_policies_over_tls())
        feeds = stack.enter_context(feed_server())
        layer = scratch / "layer.zip"
        with zipfile.ZipFile(layer, "w") as archive:
            archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
        root_configuration(scratch, server.endpoint, layer)

        def client(service: str) -> Any:
            return boto3.client(service, region_name="us-east-1", endpoint_url=server.endpoint)

        started = time.perf_counter()
        progress("terraform init (threat_lists)")
        _run(["init", "-input=false", "-no-color"], scratch)
        progress("terraform apply (threat_lists module into moto)")
        _run(["apply", "-input=false", "-no-color", "-auto-approve"], scratch)
        out = {k: v["value"] for k, v in json.loads(_run(["output", "-json"], scratch)).items()}
        result.timings["apply"] = time.perf_counter() - started

        started = time.perf_counter()
        function = client("lambda").get_function_configuration(FunctionName=out["function_arn"])
        location = f"https://s3.amazonaws.com/{out['bucket']}/lists/{FEED_NAME}.txt"
        url = feeds.serve(f"{FEED_NAME}.txt", FEED)
        variables = {
            **function["Environment"]["Variables"],
            "FEEDS": json.dumps([{"name": FEED_NAME, "url": url, "format": "plain"}]),
            "THREAT_LISTS": json.dumps({FEED_NAME: {"id": SET_ID, "location": location}}),
            "THREAT_FEED_ALLOW_HTTP_LOOPBACK": "1",
            "AWS_REGION": "us-east-1",
        }
        context: Any = InProcessContext.of(function["FunctionArn"])
        progress("threat_feed: fetch, normalise, write, UpdateThreatIntelSet")
        with scoped_environ(variables):
            aws.reset()
            guardduty = aws.client("guardduty")
            recorded: list[dict[str, Any]] = []
            guardduty.meta.events.register(
                "provide-client-params.guardduty.UpdateThreatIntelSet",
                lambda params, **_: recorded.append(dict(params)),
            )
            with Stubber(guardduty) as stubber:
                stubber.add_response("update_threat_intel_set", {})
                first = handler.lambda_handler({}, context)
                second = handler.lambda_handler({"feeds": [FEED_NAME]}, context)
            aws.reset()
        (item,) = first["lists"]
        result.outcome = f"{item['outcome']}, {item['entries']} entries"
        result.counts = item["counts"]
        result.request = recorded[0] if recorded else {}
        result.second_outcome = second["lists"][0]["outcome"]
        requests = feeds.requests_for(f"{FEED_NAME}.txt")
        result.conditional = requests[-1].get("If-None-Match", "") if requests else ""
        s3 = client("s3")
        listed = s3.get_object(Bucket=out["bucket"], Key=f"lists/{FEED_NAME}.txt")
        result.entries = listed["Body"].read().decode().splitlines()
        result.versions = len(
            s3.list_object_versions(Bucket=out["bucket"], Prefix="lists/").get("Versions", [])
        )
        messages = client("sqs").receive_message(QueueUrl=out["reports_url"], WaitTimeSeconds=1)
        for message in messages.get("Messages", []):
            result.report_title = json.loads(json.loads(message["Body"])["Message"])["detail"][
                "title"
            ]
        result.timings["update"] = time.perf_counter() - started

        started = time.perf_counter()
        progress("terraform destroy (threat_lists)")
        _run(["destroy", "-input=false", "-no-color", "-auto-approve"], scratch)
        result.timings["destroy"] = time.perf_counter() - started
    return result


def print_summary(console: Any, update: FeedUpdate) -> None:
    """The threat lists part of the demo's output."""
    from rich.padding import Padding
    from rich.text import Text

    console.rule("Threat feed from 127.0.0.1 -> GuardDuty threat list (threat_lists module)")
    console.print(f"list {FEED_NAME}: {update.outcome}")
    console.print(Text("left out, by reason:", style="bold"))
    for reason, count in sorted(update.counts.items()):
        console.print(Padding(Text(f"{count:>3}  {reason}"), (0, 0, 0, 3)))
    console.print(Text(f"written to the bucket (lists/{FEED_NAME}.txt, KMS):", style="bold"))
    for entry in update.entries:
        console.print(Padding(Text(entry), (0, 0, 0, 3)))
    request = ", ".join(f"{k}={v}" for k, v in sorted(update.request.items()))
    console.print(
        Text(f"UpdateThreatIntelSet (moto lacks it; recorded): {request}", overflow="fold")
    )
    console.print(
        f"second run: conditional GET (If-None-Match {update.conditional}) -> "
        f"{update.second_outcome}; list versions in the bucket: {update.versions}"
    )
    console.print(f"report sent: {update.report_title or '(none)'}")
    console.print(
        f"threat lists: apply {update.timings['apply']:.0f} s, update "
        f"{update.timings['update']:.1f} s, destroy {update.timings['destroy']:.0f} s"
    )
