"""Benchmarks, run by `make bench`; figures are written to docs/benchmarks.md.

Each synth figure is a whole `python main.py synth` process, as a user runs it:
wall time, and the peak resident memory of the process tree (Python plus the Node.js
child that jsii starts), sampled from /proc every 20 ms. Runs are repeated and the
median is reported with the spread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _tree_rss_kib(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        stack.extend(_children(current))
    return total


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak tree RSS (MiB) of one run of ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()}")
    return seconds, peak / 1024


def generated_environment(directory: Path, accounts: int, regions: list[str]) -> Path:
    data = {
        "name": "bench",
        "description": f"{accounts} generated accounts in {len(regions)} regions",
        "backend": {"bucket": "bench-terraform-state", "region": "us-east-1"},
        "defaults": {
            "regions": regions,
            "tags": {"Owner": "bench"},
            "modules": {"notifications": {"webhook_secret_name": "playbook/webhooks"}},
        },
        "accounts": [
            {
                "name": f"account-{index:03d}",
                "id": f"{100000000000 + index:012d}",
                "role_arn": f"arn:aws:iam::{100000000000 + index:012d}:role/PlaybookDeployer",
                "wave": 1 + index % 3,
                "modules": {"notifications": {"email_addresses": [f"team{index}@example.com"]}},
            }
            for index in range(accounts)
        ],
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def synth_rows(repeat: int) -> tuple[list[tuple[str, str, str]], str]:
    rows = []
    medians = []
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as scratch:
        env = {**os.environ, "PLAYBOOK_DIST": str(Path(scratch) / "dist")}
        big = generated_environment(Path(scratch), 50, ["us-east-1", "eu-west-1"])
        cases: list[tuple[str, list[str], int]] = [
            ("example environment (4 stacks)", ["--env", "example"], 4),
            ("50 accounts x 2 regions (100 stacks)", ["--file", str(big)], 100),
        ]
        for label, arguments, stacks in cases:
            runs = [
                measure([sys.executable, "main.py", "synth", *arguments], env)
                for _ in range(repeat)
            ]
            seconds = [s for s, _ in runs]
            memory = [m for _, m in runs]
            medians.append((stacks, statistics.median(seconds)))
            rows.append(
                (
                    label,
                    f"{statistics.median(seconds):.2f} s "
                    f"(min {min(seconds):.2f}, max {max(seconds):.2f})",
                    f"{statistics.median(memory):.0f} MiB",
                )
            )
    (small, small_s), (large, large_s) = medians
    marginal = (large_s - small_s) / (large - small) * 1000
    return rows, f"Each further stack costs about {marginal:.0f} ms; the rest is fixed start-up."


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (
        f"{os.cpu_count()} cores ({cpu}), {int(memory) / 1024 / 1024:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


SECTIONS: dict[str, Callable[[int], list[str]]] = {}


def section(name: str) -> Callable[[Callable[[int], list[str]]], Callable[[int], list[str]]]:
    def register(function: Callable[[int], list[str]]) -> Callable[[int], list[str]]:
        SECTIONS[name] = function
        return function

    return register


@section("synth")
def synth_section(repeat: int) -> list[str]:
    rows, marginal = synth_rows(repeat)
    return [
        "## Synthesis (`python main.py synth`)",
        "",
        "Whole process, as a user runs it: Python start-up, jsii and Node.js start-up, "
        "packaging, module and stack synthesis, the atomic swap of dist/. Peak memory is "
        "the resident set of the whole process tree.",
        "",
        *table(("case", f"wall time (median of {repeat})", "peak RSS"), rows),
        "",
        marginal + " Most of the memory is the Node.js process holding the "
        "cdktn-provider-aws type library.",
    ]


@section("waf_blocker")
def waf_blocker_section(repeat: int) -> list[str]:
    """benchmarks/bench_waf_blocker.py against a moto server: its table, as it prints it."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_waf_blocker.py"),
         "--findings", "1000", "--per-finding", "1", "--workers", "8"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    table_lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    return [
        "## WAF blocker (`benchmarks/bench_waf_blocker.py`)",
        "",
        "1,000 port-probe findings with one address each through the real handler against a "
        "moto server on 127.0.0.1, all on one IP set: one invocation per finding (before the "
        "queue; one worker, then 8 concurrent ones), then SQS batches of the default "
        "queue_batch_size to 8 concurrent invocations, as the event source mapping delivers "
        "them (docs/architecture.md section 45). Target for the batches: under 50 "
        "UpdateIPSet calls, no address lost, each in the set once (the benchmark checks). "
        "moto answers in milliseconds where WAF takes tens of them, so these figures are the "
        "remediator's own overhead and its behaviour under LockToken contention, not AWS "
        "throughput.",
        "",
        *table_lines,
    ]


@section("threat_feed")
def threat_feed_section(repeat: int) -> list[str]:
    """benchmarks/bench_threat_feed.py: its table, as it prints it."""
    script = str(ROOT / "benchmarks" / "bench_threat_feed.py")
    result = subprocess.run(
        [sys.executable, script, "--repeat", str(max(repeat, 3))],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    table_lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    return [
        "## Threat feed normalisation (`benchmarks/bench_threat_feed.py`)",
        "",
        "A generated 250,000-line plain feed (70% IPv4 hosts, 10% IPv4 /24s, 20% IPv6 hosts; "
        "10% of the lines repeat an earlier one, 5% are invalid or non-global) through what "
        "the threat_feed updater does with a feed's text: parse, judge every entry by the "
        "blockers' address rules, deduplicate, collapse, write the list text. Target: under "
        "1 s and 150 MiB.",
        "",
        *table_lines,
    ]


@section("rollouts")
def rollouts_section(repeat: int) -> list[str]:
    """benchmarks/bench_rollouts.py: synthesis at scale and plan orchestration."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_rollouts.py"), "--repeat", str(repeat)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [
        "## Rollouts (`benchmarks/bench_rollouts.py`)",
        "",
        "Synthesis of generated environments (2 regions per account) as a whole "
        "`python main.py synth` process, and `plan` of 8 stacks against a moto server "
        "(S3 backend and assume_role through moto) with 1, 2 and 4 stacks at once.",
        "",
        *result.stdout.splitlines(),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    arguments = parser.parse_args()
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (benchmarks/run.py); numbers are from the machine below and "
        "move with it. Rerun to refresh.",
        "",
        f"Machine: {machine()}. Measured {datetime.now(UTC):%Y-%m-%d}.",
        "",
    ]
    for name in arguments.only or list(SECTIONS):
        print(f"bench: {name}", file=sys.stderr)
        lines += [*SECTIONS[name](arguments.repeat), ""]
    report = "\n".join(lines)
    print(report)
    if arguments.write:
        arguments.write.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
