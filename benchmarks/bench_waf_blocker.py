"""Throughput of the WAF blocker against a local moto server.

    python benchmarks/bench_waf_blocker.py --findings 200 [--per-finding 5] [--workers 8]

Pushes port-probe findings through the real handler in two shapes and prints a markdown
table: findings per second and the UpdateIPSet calls made per 1,000 blocked addresses
(successful writes plus the attempts WAF refused with a stale LockToken).

- per event (before the queue): one invocation per finding, as EventBridge invoked the
  function directly, once with one worker and once with ``--workers`` concurrent ones. An
  invocation that runs out of LockToken attempts is delivered again, as Lambda does for
  asynchronous events, and counted as a redelivery.
- SQS batches (the queue in front of the blocker): the findings in batches of the
  modules' default ``queue_batch_size``, the way the event source mapping delivers them,
  to ``--workers`` concurrent invocations; the records a batch reports in
  ``batchItemFailures`` are delivered again (SQS after the visibility timeout).

After each run the IPv4 set is read back: every address must be in it exactly once,
nothing lost (the table says so, and the script fails otherwise). moto answers in
microseconds where WAF takes tens of milliseconds, so read the figures as the
remediator's own overhead and contention behaviour, not as AWS throughput.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a plain script, Python puts benchmarks/ on the path, not the repository root.
sys.path.insert(0, str(ROOT))
# Quiet Powertools before it is imported: per-finding INFO lines would dominate the timing.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

import boto3  # noqa: E402

from bundle.motoserver import InProcessContext, MotoServer, moto_server, pointed_at  # noqa: E402
from functions.common import aws, queue  # noqa: E402
from functions.waf_blocker import handler  # noqa: E402
from functions.waf_blocker.logic import IpSetUpdateError  # noqa: E402

REGION = "us-east-1"
SOURCE_RANGE = ipaddress.ip_network("185.0.0.0/8")  # ordinary unicast: every address global
MAX_ADDRESSES = 10_000
LAMBDA_ASYNC_RETRIES = 2
SQS_RECEIVES = 5  # the modules' maxReceiveCount before the dead-letter queue
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:bench-waf-blocker-intake"
_GUARD = threading.Lock()


def count(counts: dict[str, int], key: str, amount: int = 1) -> None:
    with _GUARD:
        counts[key] += amount


CONTEXT = InProcessContext.named("waf-blocker", remaining_ms=900_000)


@dataclass(frozen=True)
class Run:
    label: str
    findings: int
    addresses: int
    seconds: float
    update_calls: int
    conflicts: int
    redeliveries: int
    in_set: int
    lost: int
    repeated: int

    def row(self) -> str:
        per_thousand = self.update_calls * 1000 / self.addresses
        return (
            f"| {self.label} | {self.findings} | {self.addresses} | {self.seconds:.2f} | "
            f"{self.findings / self.seconds:.1f} | {self.update_calls} | {per_thousand:.1f} | "
            f"{self.conflicts} | {self.redeliveries} | {self.in_set} | {self.lost} | "
            f"{self.repeated} |"
        )


def findings(count: int, per_finding: int) -> list[dict[str, Any]]:
    template = json.loads((ROOT / "tests" / "events" / "gd_waf_port_probe.json").read_text())
    probe = template["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"][0]
    base = int(SOURCE_RANGE.network_address)
    events = []
    for finding in range(count):
        event = copy.deepcopy(template)
        event["id"] = str(uuid.uuid4())
        event["detail"]["id"] = uuid.uuid4().hex
        details = []
        for slot in range(per_finding):
            detail = copy.deepcopy(probe)
            host = ipaddress.IPv4Address(base + 1 + (finding * per_finding + slot) * 7_919)
            detail["remoteIpDetails"]["ipAddressV4"] = str(host)
            details.append(detail)
        event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"] = details
        events.append(event)
    return events


def deploy() -> dict[str, str]:
    waf = boto3.client("wafv2", region_name=REGION)
    sets = {
        version: waf.create_ip_set(
            Name=f"bench-ipv{version}",
            Scope="REGIONAL",
            IPAddressVersion=f"IPV{version}",
            Addresses=[],
        )["Summary"]
        for version in (4, 6)
    }
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="waf-blocker-bench",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    os.environ.update(
        {
            "STATE_TABLE": "waf-blocker-bench",
            "IPV4_SET_NAME": sets[4]["Name"],
            "IPV4_SET_ID": sets[4]["Id"],
            "IPV6_SET_NAME": sets[6]["Name"],
            "IPV6_SET_ID": sets[6]["Id"],
            "IP_SET_SCOPE": "REGIONAL",
            "NOTIFY_TOPIC_ARN": "",
        }
    )
    return {"Name": sets[4]["Name"], "Id": sets[4]["Id"]}


def addresses_of(events: list[dict[str, Any]]) -> list[str]:
    return [
        f"{detail['remoteIpDetails']['ipAddressV4']}/32"
        for event in events
        for detail in event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"]
    ]


def deliver_events(events: list[dict[str, Any]], workers: int, counts: dict[str, int]) -> None:
    """One invocation per finding (EventBridge invoking the function directly)."""

    def deliver(event: dict[str, Any]) -> None:
        # Out of LockToken attempts, Lambda delivers an asynchronous event again (twice).
        for attempt in range(LAMBDA_ASYNC_RETRIES + 1):
            try:
                result = handler.lambda_handler(event, CONTEXT)
            except IpSetUpdateError:
                if attempt == LAMBDA_ASYNC_RETRIES:
                    raise
                count(counts, "redeliveries")
                continue
            if result["status"] != "processed":
                raise RuntimeError(f"finding not processed: {result}")
            return

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(deliver, events))


def deliver_batches(events: list[dict[str, Any]], workers: int, counts: dict[str, int]) -> None:
    """Batches of the default queue_batch_size (the SQS event source mapping)."""
    size = queue.DEFAULT_BATCH_SIZE
    batches = [
        queue.sqs_batch(events[start : start + size], QUEUE_ARN)
        for start in range(0, len(events), size)
    ]

    def deliver(batch: dict[str, Any]) -> None:
        for _receive in range(SQS_RECEIVES):
            failures = handler.lambda_handler(batch, CONTEXT)["batchItemFailures"]
            if not failures:
                return
            count(counts, "redeliveries", len(failures))
            failed = {failure["itemIdentifier"] for failure in failures}
            batch = {"Records": [r for r in batch["Records"] if r["messageId"] in failed]}
        raise RuntimeError(f"{len(batch['Records'])} records would go to the dead-letter queue")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(deliver, batches))


def run(
    server: MotoServer,
    label: str,
    events: list[dict[str, Any]],
    workers: int,
    deliver: Callable[[list[dict[str, Any]], int, dict[str, int]], None],
) -> Run:
    server.reset()
    ip_set = deploy()
    aws.reset()
    counts = {"updates": 0, "conflicts": 0, "redeliveries": 0}

    def before_update(**_: Any) -> None:
        count(counts, "updates")

    def after_update(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "WAFOptimisticLockException":
            count(counts, "conflicts")

    hooks = aws.session().events
    hooks.register("before-call.wafv2.UpdateIPSet", before_update)
    hooks.register("after-call.wafv2.UpdateIPSet", after_update)

    started = time.perf_counter()
    deliver(events, workers, counts)
    seconds = time.perf_counter() - started
    expected = addresses_of(events)
    held = boto3.client("wafv2", region_name=REGION).get_ip_set(Scope="REGIONAL", **ip_set)
    in_set = held["IPSet"]["Addresses"]
    return Run(
        label,
        len(events),
        len(expected),
        seconds,
        counts["updates"],
        counts["conflicts"],
        counts["redeliveries"],
        in_set=len(in_set),
        lost=len(set(expected) - set(in_set)),
        repeated=len(in_set) - len(set(in_set)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=200, help="findings per scenario")
    parser.add_argument("--per-finding", type=int, default=5, help="addresses per finding")
    parser.add_argument("--workers", type=int, default=8, help="concurrent invocations")
    args = parser.parse_args(argv)
    if args.findings < 1 or args.per_finding < 1 or args.workers < 1:
        parser.error("--findings, --per-finding and --workers must be positive")
    if args.findings * args.per_finding > MAX_ADDRESSES:
        parser.error(f"at most {MAX_ADDRESSES} addresses fit in one IP set")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    events = findings(args.findings, args.per_finding)
    with moto_server() as server, pointed_at(server.endpoint):
        runs = [
            run(server, "per event, sequential (1 worker)", events, 1, deliver_events),
            run(
                server,
                f"per event, concurrent ({args.workers} workers)",
                events,
                args.workers,
                deliver_events,
            ),
            run(
                server,
                f"SQS batches of {queue.DEFAULT_BATCH_SIZE}, concurrent ({args.workers} workers)",
                events,
                args.workers,
                deliver_batches,
            ),
        ]
    print(
        "| scenario | findings | addresses | seconds | findings/s | UpdateIPSet calls "
        "| UpdateIPSet calls per 1,000 addresses | lock conflicts | redeliveries "
        "| addresses in the set | lost | in the set twice |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in runs:
        print(result.row())
    broken = [r.label for r in runs if r.lost or r.repeated or r.in_set != r.addresses]
    if broken:
        print(f"addresses lost or repeated in: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
