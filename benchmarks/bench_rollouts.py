"""Rollout benchmarks (run by benchmarks/run.py; usable alone):

* synthesis of generated environments of 1, 50, 200 and 500 accounts in 2 regions each:
  wall time and peak memory of the whole `python main.py synth` process tree, and the
  cost per stack;
* `plan` orchestration of 8 one-region stacks (notifications without its notifier and
  finding rules) against a moto server with 1, 2 and 4 stacks at once: the real CLI
  path (bundle/orchestration.py), the S3 backend in moto's S3, assume_role through its
  STS. moto answers in milliseconds, so the figures are Terraform's own cost per stack
  and how it overlaps, not AWS latency.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import generated_environment, measure, table  # noqa: E402

SERVICES = ("iam", "kms", "s3", "sns", "sts")


def synth_scale(accounts: list[int], repeat: int) -> list[str]:
    rows = []
    points = []
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as scratch:
        env = {**os.environ, "PLAYBOOK_DIST": str(Path(scratch) / "dist")}
        for count in accounts:
            path = generated_environment(Path(scratch), count, ["us-east-1", "eu-west-1"])
            runs = [
                measure([sys.executable, "main.py", "synth", "--file", str(path)], env)
                for _ in range(repeat)
            ]
            seconds = statistics.median(s for s, _ in runs)
            memory = statistics.median(m for _, m in runs)
            points.append((count * 2, seconds))
            rows.append(
                (f"{count} x 2 regions", str(count * 2), f"{seconds:.2f} s", f"{memory:.0f} MiB")
            )
    lines = table(("accounts", "stacks", f"synth (median of {repeat})", "peak RSS"), rows)
    if len(points) > 1:
        (few, few_s), (many, many_s) = points[0], points[-1]
        lines += [
            "",
            f"Each further stack costs about {(many_s - few_s) / (many - few) * 1000:.0f} ms.",
        ]
    return lines


def plan_orchestration(stacks: int, parallel: list[int]) -> list[str]:
    import boto3

    from bundle import environments, orchestration
    from bundle.motoserver import moto_server, pointed_at, s3_backend_config, terraform_override

    rows = []
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as scratch:
        work = Path(scratch)
        data = {
            "name": "bench",
            "backend": {"bucket": "bench-state", "region": "us-east-1"},
            "waves": [{"number": 1, "max_parallel": 64}],
            "defaults": {
                "regions": ["us-east-1"],
                "modules": {
                    "notifications": {"create_notifier": False, "create_finding_rules": False}
                },
            },
            "accounts": [
                {
                    "name": f"account-{index:02d}",
                    "id": f"{200000000000 + index:012d}",
                    "role_arn": f"arn:aws:iam::{200000000000 + index:012d}:role/Deployer",
                }
                for index in range(stacks)
            ],
        }
        path = work / "bench.yaml"
        path.write_text(yaml.safe_dump(data))
        measure(
            [sys.executable, "main.py", "synth", "--file", str(path)],
            {**os.environ, "PLAYBOOK_DIST": str(work / "dist")},
        )
        environment = environments.load(path)
        with moto_server() as server, pointed_at(server.endpoint):
            boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="bench-state")
            (work / "backend.hcl").write_text(s3_backend_config(server.endpoint))
            for width in parallel:
                started = time.perf_counter()
                rollout = orchestration.run(
                    environment,
                    "plan",
                    dist=work / "dist",
                    workdir=work / f"work-{width}",
                    parallel=width,
                    backend_config=[str(work / "backend.hcl")],
                    override=terraform_override(server.endpoint, SERVICES),
                )
                seconds = time.perf_counter() - started
                if not rollout.ok:
                    raise RuntimeError("\n".join(r.error for r in rollout.runs if r.error))
                per_stack = statistics.median(r.seconds for r in rollout.runs)
                rows.append((str(width), str(stacks), f"{seconds:.1f} s", f"{per_stack:.1f} s"))
    return table(("parallel", "stacks", "init + plan, all stacks", "median per stack"), rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, nargs="+", default=[1, 50, 200, 500])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stacks", type=int, default=8)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    arguments = parser.parse_args()
    print("### Synthesis at scale\n")
    print("\n".join(synth_scale(arguments.accounts, arguments.repeat)))
    print("\n### Plan orchestration against moto\n")
    print("\n".join(plan_orchestration(arguments.stacks, arguments.parallel)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
