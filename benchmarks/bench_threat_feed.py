"""Parse, normalise, deduplicate and collapse a generated threat feed.

    python benchmarks/bench_threat_feed.py [--entries 250000] [--repeat 5]

The feed is plain text, one entry per line: 70% IPv4 hosts, 10% IPv4 /24 ranges and 20%
IPv6 hosts from ordinary global unicast space, then 10% of the lines repeat an earlier
line and 5% are invalid (malformed text, private, loopback, link-local, documentation
addresses, host bits set). The timed work is exactly what the updater does with a feed's
text: parsers.parse_plain, entries.normalise_entries (the blockers' address rules,
deduplication, collapsing) and the list text. Time is the median of ``--repeat`` runs;
memory is the peak of Python allocations during one run (tracemalloc, run apart from the
timed runs because tracing slows them) and the peak resident set of the measuring process
(a fresh interpreter that reads the feed file and runs the work; the feed is generated in
another). CPU time is reported beside wall time because the wall time moves with whatever
else the machine runs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from functions.threat_feed import entries, parsers  # noqa: E402

INVALID = (
    "not-an-address", "1.2.3", "999.1.1.1", "10.1.2.3", "192.168.7.7", "127.0.0.53",
    "169.254.169.254", "198.51.100.23", "fe80::1", "2001:db8::7", "1.2.3.4/33", "45.155.205.1/24",
)  # fmt: skip


def generate(count: int, seed: int = 20251120) -> str:
    rng = random.Random(seed)
    lines: list[str] = []
    low, high = int(ipaddress.IPv4Address("11.0.0.0")), int(ipaddress.IPv4Address("99.255.255.255"))
    v6 = int(ipaddress.IPv6Address("2a00::"))
    for _ in range(count):
        draw = rng.random()
        if draw < 0.05:
            lines.append(rng.choice(INVALID))
        elif draw < 0.15 and lines:
            lines.append(lines[rng.randrange(len(lines))])
        elif draw < 0.75:
            lines.append(str(ipaddress.IPv4Address(rng.randint(low, high))))
        elif draw < 0.80:
            lines.append(f"{ipaddress.IPv4Address(rng.randint(low, high) & 0xFFFFFF00)}/24")
        else:
            lines.append(str(ipaddress.IPv6Address(v6 | rng.getrandbits(96))))
    return "".join(f"{line}\n" for line in lines)


def work(text: str) -> entries.Normalised:
    parsed = parsers.parse_plain(text)
    result = entries.normalise_entries(parsed.candidates, (), parsed.rejected)
    result.text()
    return result


def measure(feed: Path, repeat: int) -> str:
    """The table row, measured in this process (a fresh one: its peak RSS is the run's)."""
    text = feed.read_text()
    wall: list[float] = []
    cpu: list[float] = []
    result: entries.Normalised | None = None
    for _ in range(repeat):
        result = None
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work(text)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert result is not None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    written = len(result.entries)
    counts = result.counts
    result = None
    gc.collect()
    tracemalloc.start()
    work(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    left_out = sum(counts.values()) - counts[entries.DUPLICATE] - counts[entries.COLLAPSED]
    return (
        f"| {text.count(chr(10)):,} ({len(text) / 1048576:.1f} MiB) | {written:,} | "
        f"{counts[entries.DUPLICATE]:,} | {counts[entries.COLLAPSED]:,} | {left_out:,} | "
        f"{statistics.median(wall):.2f} s (min {min(wall):.2f}) | "
        f"{statistics.median(cpu):.2f} s | {peak / 1048576:.0f} MiB | {rss:.0f} MiB |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        print(measure(arguments.measure, arguments.repeat))
        return 0
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as scratch:
        feed = Path(scratch) / "feed.txt"
        feed.write_text(generate(arguments.entries))
        row = subprocess.run(
            [sys.executable, __file__, "--measure", str(feed), "--repeat", str(arguments.repeat)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    print(
        "| feed lines | written | duplicates | collapsed | other left out | "
        f"wall time (median of {arguments.repeat}) | CPU time | peak Python allocations | "
        "peak RSS of the process |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
