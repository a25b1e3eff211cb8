"""The local incident demo: the headline playbook, run on this machine alone.

A moto server on 127.0.0.1 stands in for AWS. The generated notifications and waf_shield
modules are applied to it with the real Terraform CLI and AWS provider; sample GuardDuty
findings (shaped as AWS documents them, in bundle/demo_findings/) go through the real
waf_blocker handler in-process (moto cannot run Lambda code without Docker), and each
remediation report goes through the real notifier to the readable e-mail. Then an
injected clock moves past the block's expiry, the sweeper runs, and everything is
destroyed.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bundle import terraform
from bundle.motoserver import (
    InProcessContext,
    lambda_sns_record,
    moto_server,
    pointed_at,
    quiet_loggers,
    scoped_environ,
)
from bundle.paths import DIST

FINDINGS = Path(__file__).resolve().parent / "demo_findings"
PREFIX = "demo"
ALLOWLIST = ["45.155.205.0/24", "2001:db8:100::/48"]
BLOCK_TTL_SECONDS = 3600
# moto has no Security Hub action targets: the demo names the action the analyst presses.
BLOCK_IP_ACTION_ARN = "arn:aws:securityhub:us-east-1:123456789012:action/custom/BlockIP"
SERVICES = (
    "cloudwatch",
    "dynamodb",
    "ec2",
    "events",
    "iam",
    "kms",
    "lambda",
    "logs",
    "sns",
    "sqs",
    "sts",
    "wafv2",
)


@dataclass
class Step:
    label: str
    addresses: str
    decision: str
    ipv4_set: list[str]
    ipv6_set: list[str]
    nacl_entries: list[str]
    emails: list[str]


@dataclass
class DemoClock:
    """The remediator's clock; the demo moves it forward instead of waiting an hour."""

    start: float = field(default_factory=time.time)
    offset: float = 0.0

    def now(self) -> float:
        return self.start + self.offset


def root_configuration(directory: Path, endpoint: str, layer_zip: Path) -> None:
    """A root module calling the two generated modules, its provider pointed at moto."""
    modules = DIST / "modules"
    config = {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.100, < 7.0"}}
        },
        "provider": {
            "aws": {
                "region": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "skip_credentials_validation": True,
                "skip_metadata_api_check": True,
                "max_retries": 3,
                "endpoints": {service: endpoint for service in SERVICES},
            }
        },
        # moto rejects unknown layer ARNs, so the demo publishes a stand-in layer.
        "resource": {
            "aws_lambda_layer_version": {
                "powertools": {
                    "layer_name": f"{PREFIX}-powertools-stand-in",
                    "filename": str(layer_zip),
                    "compatible_runtimes": ["python3.12"],
                }
            },
            # Queues standing in for subscribers: one on the high topic (where the
            # remediator reports), one on the e-mail topic (where the notifier writes).
            # A VPC whose web subnet's network ACL the NACL remediator guards.
            "aws_vpc": {"this": {"cidr_block": "10.42.0.0/16"}},
            "aws_subnet": {"web": {"vpc_id": "${aws_vpc.this.id}", "cidr_block": "10.42.1.0/24"}},
            "aws_network_acl": {
                "web": {"vpc_id": "${aws_vpc.this.id}", "subnet_ids": ["${aws_subnet.web.id}"]}
            },
            "aws_sqs_queue": {
                "email": {"name": f"{PREFIX}-email-inbox"},
                "reports": {"name": f"{PREFIX}-high-topic-subscriber"},
            },
            "aws_sns_topic_subscription": {
                "email": {
                    "topic_arn": "${module.notifications.email_topic_arn}",
                    "protocol": "sqs",
                    "endpoint": "${aws_sqs_queue.email.arn}",
                    "raw_message_delivery": True,
                },
                "reports": {
                    "topic_arn": '${module.notifications.topic_arns["high"]}',
                    "protocol": "sqs",
                    "endpoint": "${aws_sqs_queue.reports.arn}",
                },
            },
        },
        "module": {
            "notifications": {
                "source": str(modules / "notifications"),
                "name_prefix": PREFIX,
                "powertools_layer_arn": "${aws_lambda_layer_version.powertools.arn}",
                "email_addresses": ["secops@example.com"],
            },
            "nacl_blocklist": {
                "source": str(modules / "nacl_blocklist"),
                "name_prefix": PREFIX,
                "network_acl_ids": ["${aws_network_acl.web.id}"],
                "rule_number_start": 10,
                "rule_number_end": 19,
                "egress_enabled": True,
                "block_ip_action_arn": BLOCK_IP_ACTION_ARN,
                "allowlist_cidrs": ALLOWLIST,
                "block_ttl_seconds": BLOCK_TTL_SECONDS,
                "notify_topic_arn": '${module.notifications.topic_arns["high"]}',
                "notify_kms_key_arn": "${module.notifications.kms_key_arn}",
                "powertools_layer_arn": "${aws_lambda_layer_version.powertools.arn}",
            },
            "waf_shield": {
                "source": str(modules / "waf_shield"),
                "name_prefix": PREFIX,
                "block_ip_action_arn": BLOCK_IP_ACTION_ARN,
                "allowlist_cidrs": ALLOWLIST,
                "block_ttl_seconds": BLOCK_TTL_SECONDS,
                "notify_topic_arn": '${module.notifications.topic_arns["high"]}',
                "notify_kms_key_arn": "${module.notifications.kms_key_arn}",
                "powertools_layer_arn": "${aws_lambda_layer_version.powertools.arn}",
            },
        },
        "output": {
            "notifier_arn": {"value": "${module.notifications.notifier_function_arn}"},
            "email_topic_arn": {"value": "${module.notifications.email_topic_arn}"},
            "email_inbox_url": {"value": "${aws_sqs_queue.email.url}"},
            "reports_url": {"value": "${aws_sqs_queue.reports.url}"},
            "waf_blocker_arn": {"value": "${module.waf_shield.waf_blocker_function_arn}"},
            "web_acl_arn": {"value": "${module.waf_shield.web_acl_arn}"},
            "nacl_blocker_arn": {"value": "${module.nacl_blocklist.nacl_blocker_function_arn}"},
            "network_acl_id": {"value": "${aws_network_acl.web.id}"},
        },
    }
    (directory / "main.tf.json").write_text(json.dumps(config, indent=2))


def _run(args: list[str], directory: Path) -> str:
    result = terraform.run(args, directory)
    if not result.ok:
        raise RuntimeError(f"terraform {' '.join(args)} failed:\n{result.output}")
    return result.output


@contextmanager
def function_environment(boto_lambda: Any, function_arn: str) -> Iterator[dict[str, str]]:
    """The applied function's own environment variables, set for the in-process handler."""
    variables = boto_lambda.get_function_configuration(FunctionName=function_arn)["Environment"][
        "Variables"
    ]
    with scoped_environ(variables):
        yield variables


def run(progress: Callable[[str], None] = lambda _: None) -> tuple[list[Step], dict[str, float]]:
    """Run the demo; returns the timeline and the time each phase took."""
    import boto3

    # The timeline says what the remediators did; their INFO logs (one JSON line per
    # finding, meant for CloudWatch) would only bury it. Warnings and errors still show.
    with scoped_environ({"POWERTOOLS_LOG_LEVEL": "WARNING"}):
        from functions.common import aws
        from functions.nacl_blocker import handler as nacl_blocker
        from functions.nacl_blocker import logic as nacl_logic
        from functions.notifier import handler as notifier
        from functions.waf_blocker import handler as waf_blocker
        from functions.waf_blocker import logic

    timings: dict[str, float] = {}
    steps: list[Step] = []
    with ExitStack() as stack:
        # moto tries to run the subscribed notifier in Docker on every publish and logs an
        # error when there is none; the demo runs it in-process instead.
        stack.enter_context(quiet_loggers("moto.awslambda.models", level=logging.CRITICAL))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="playbook-demo-")))
        server = stack.enter_context(moto_server())
        stack.enter_context(pointed_at(server.endpoint))
        layer = scratch / "layer.zip"
        with zipfile.ZipFile(layer, "w") as archive:
            archive.writestr("python/README.txt", "stand-in for AWS's Powertools layer")
        root_configuration(scratch, server.endpoint, layer)

        started = time.perf_counter()
        progress("terraform init")
        _run(["init", "-input=false", "-no-color"], scratch)
        progress("terraform apply (notifications + waf_shield into moto)")
        _run(["apply", "-input=false", "-no-color", "-auto-approve"], scratch)
        outputs = {k: v["value"] for k, v in json.loads(_run(["output", "-json"], scratch)).items()}
        timings["apply"] = time.perf_counter() - started

        def client(service: str) -> Any:
            return boto3.client(service, region_name="us-east-1", endpoint_url=server.endpoint)

        wafv2, sqs = client("wafv2"), client("sqs")
        aws.reset()
        clock = DemoClock()
        remediator_clock = logic.Clock(now=clock.now, sleep=lambda _: None)
        context = InProcessContext.of(outputs["waf_blocker_arn"])
        notifier_context = InProcessContext.of(outputs["notifier_arn"])

        def ip_set(version: int) -> list[str]:
            name = f"{PREFIX}-blocklist-ipv{version}"
            summary = next(
                s for s in wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == name
            )
            found = wafv2.get_ip_set(Name=name, Scope="REGIONAL", Id=summary["Id"])["IPSet"]
            return sorted(found["Addresses"])

        def drain(queue_url: str) -> list[str]:
            bodies = []
            for message in sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            return bodies

        def tell_people() -> list[str]:
            """What the high topic carried since the last step, through the real notifier
            (as its Lambda subscription would); returns the e-mails the notifier wrote."""
            envelopes = [json.loads(body) for body in drain(outputs["reports_url"])]
            if not envelopes:
                return []
            records = [lambda_sns_record(envelope) for envelope in envelopes]
            with function_environment(client("lambda"), outputs["notifier_arn"]):
                notifier.lambda_handler({"Records": records}, cast(Any, notifier_context))
            return sorted(drain(outputs["email_inbox_url"]))

        nacl_context = InProcessContext.of(outputs["nacl_blocker_arn"])
        nacl_clock = nacl_logic.Clock(now=clock.now, sleep=lambda _: None)

        def nacl_entries() -> list[str]:
            acls = client("ec2").describe_network_acls(NetworkAclIds=[outputs["network_acl_id"]])
            entries = acls["NetworkAcls"][0]["Entries"]
            return [
                f"#{e['RuleNumber']} {'egress' if e['Egress'] else 'ingress'} deny "
                f"{e.get('CidrBlock') or e.get('Ipv6CidrBlock')}"
                for e in sorted(entries, key=lambda e: (e["Egress"], e["RuleNumber"]))
                if e["RuleAction"] == "deny" and e["RuleNumber"] < 32767
            ]

        def remediate(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            """The event through both remediators, each configured like its applied function."""
            with function_environment(client("lambda"), outputs["waf_blocker_arn"]):
                waf = waf_blocker.lambda_handler(event, cast(Any, context), clock=remediator_clock)
            with function_environment(client("lambda"), outputs["nacl_blocker_arn"]):
                nacl = nacl_blocker.lambda_handler(event, cast(Any, nacl_context), clock=nacl_clock)
            return waf, nacl

        started = time.perf_counter()
        deliveries = [*sorted(FINDINGS.glob("*.json")), FINDINGS / "1-ssh-brute-force.json"]
        for index, path in enumerate(deliveries):
            finding = json.loads(path.read_text())
            redelivery = index == len(deliveries) - 1
            label = f"{finding['detail']['type']} (sev {finding['detail']['severity']})"
            if redelivery:
                label = "same SSH finding delivered again"
            progress(f"finding: {label}")
            waf, nacl = remediate(finding)
            decision = _decision(waf, redelivery)
            if not redelivery:
                decision += _nacl_line(nacl)
            steps.append(
                Step(
                    label,
                    _addresses(waf),
                    decision,
                    ip_set(4),
                    ip_set(6),
                    nacl_entries(),
                    tell_people(),
                )
            )
        action = json.loads((FINDINGS / "securityhub" / "block-ip.json").read_text())
        progress("Security Hub: an analyst presses Block IP on two findings")
        waf, nacl = remediate(action)
        steps.append(
            Step(
                f"Security Hub Block IP ({len(action['detail']['findings'])} findings)",
                _addresses(waf),
                _decision(waf, False) + _nacl_line(nacl),
                ip_set(4),
                ip_set(6),
                nacl_entries(),
                tell_people(),
            )
        )
        clock.offset = BLOCK_TTL_SECONDS + 60
        progress("clock moved past the expiry; sweeping")
        waf, nacl = remediate({"action": "sweep"})
        expired = waf.get("expired", [])
        steps.append(
            Step(
                f"sweep, {BLOCK_TTL_SECONDS // 60 + 1} minutes later",
                ", ".join(expired) or "-",
                "expired blocks removed from WAF and the NACL" if expired else json.dumps(waf)[:80],
                ip_set(4),
                ip_set(6),
                nacl_entries(),
                tell_people(),
            )
        )
        timings["playbook"] = time.perf_counter() - started

        started = time.perf_counter()
        progress("terraform destroy")
        _run(["destroy", "-input=false", "-no-color", "-auto-approve"], scratch)
        timings["destroy"] = time.perf_counter() - started
    return steps, timings


def _nacl_line(result: dict[str, Any]) -> str:
    """The NACL entries a remediation made: ingress for attackers, egress for destinations."""
    if not result.get("blocked"):
        return ""
    return "\nNACL: " + ", ".join(
        f"{b['address']} #{b['ruleNumber']} {b['direction']}" for b in result["blocked"]
    )


def _addresses(result: dict[str, Any]) -> str:
    found = [b["address"] for b in result.get("blocked", [])]
    found += [r["address"] for r in result.get("rejected", [])]
    return ", ".join(found) or "-"


def _decision(result: dict[str, Any], redelivery: bool) -> str:
    if redelivery:
        return (
            "no change (idempotent: result replayed)"
            if result.get("status") == "processed"
            else str(result)
        )
    if result.get("status") == "ignored":
        return f"ignored: {result.get('reason')}"
    lines = [
        f"blocked {b['address']} until {b['expiresAt'][11:16]} UTC"
        for b in result.get("blocked", [])
    ]
    lines += [f"rejected {r['address']}: {r['reason']}" for r in result.get("rejected", [])]
    lines += [f"evicted {e}" for e in result.get("evicted", [])]
    if not lines and result.get("status") == "processed":
        return (
            "nothing to block: the finding names no inbound attacker "
            "(our instance made the connection)"
        )
    return "\n".join(lines) or result.get("status", "?")


def email_excerpt(body: str, limit: int = 8) -> list[str]:
    """The title and the "What happened" part of a notifier e-mail."""
    lines = body.splitlines()
    if "What happened" not in lines:
        return lines[:limit]
    start = lines.index("What happened") + 2
    end = lines.index("Details") if "Details" in lines else len(lines)
    return [lines[0], *[line for line in lines[start:end] if line.strip()]][:limit]
