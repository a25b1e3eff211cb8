"""Checks of what synthesis wrote: terraform init + validate of every module and stack,
then checkov on dist/.

Terraform runs in a copy of dist/ under .cache/check/, so ``.terraform/`` folders and
lock files never land in dist/ (which stays byte-for-byte what synthesis wrote).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from bundle import terraform
from bundle.paths import CACHE, CHECKOV_SKIPS, DIST, ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str


def configurations(dist: Path = DIST) -> list[Path]:
    """Every generated module and stack folder under ``dist``."""
    found = sorted(p.parent for p in dist.glob("modules/*/main.tf.json"))
    found += sorted(p.parent for p in dist.glob("environments/*/*/main.tf.json"))
    return found


def prepare_workspace(dist: Path = DIST, workspace: Path = CACHE / "check" / "dist") -> Path:
    """A fresh copy of ``dist`` at ``workspace`` for Terraform to work in."""
    if workspace.exists():
        shutil.rmtree(workspace)
    shutil.copytree(dist, workspace)
    return workspace


def validate_one(directory: Path, label: str) -> Outcome:
    init = terraform.run(["init", "-backend=false", "-input=false", "-no-color"], directory)
    if not init.ok:
        return Outcome(label, False, f"terraform init failed:\n{init.output}")
    result = terraform.run(["validate", "-json", "-no-color"], directory)
    try:
        report = json.loads(result.output)
    except json.JSONDecodeError:
        return Outcome(label, False, f"terraform validate printed no JSON:\n{result.output}")
    problems = [
        f"{d.get('severity')}: {d.get('summary')} {d.get('detail', '')}".strip()
        for d in report.get("diagnostics", [])
        if d.get("severity") == "error"
    ]
    warnings = sum(1 for d in report.get("diagnostics", []) if d.get("severity") == "warning")
    if not report.get("valid") or problems:
        return Outcome(label, False, "\n".join(problems) or result.output)
    return Outcome(label, True, f"valid ({warnings} warning(s))")


def validate_all(
    dist: Path = DIST,
    progress: Callable[[str], None] = lambda _: None,
    workers: int = 2,
    workspace: Path = CACHE / "check" / "dist",
) -> list[Outcome]:
    workspace = prepare_workspace(dist, workspace)
    directories = configurations(workspace)
    if not directories:
        return [Outcome("dist", False, "nothing to validate: run `python main.py synth` first")]
    labels = {d: str(d.relative_to(workspace)) for d in directories}
    # The first init fills the shared plugin cache; the rest only link to it (see
    # terraform.cli_config_text), so parallel inits never write the same cache entry.
    progress(f"terraform validate {labels[directories[0]]}")
    outcomes = [validate_one(directories[0], labels[directories[0]])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in pool.map(lambda d: validate_one(d, labels[d]), directories[1:]):
            progress(f"terraform validate {outcome.name}")
            outcomes.append(outcome)
    return outcomes


def checkov_skips(path: Path = CHECKOV_SKIPS) -> dict[str, str]:
    """The one list of skipped checkov checks, each with its reason."""
    data = yaml.safe_load(path.read_text()) or {}
    skips = data.get("skips", {})
    missing = [check for check, reason in skips.items() if not str(reason or "").strip()]
    if missing:
        raise ValueError(f"{path.name}: every skip needs a reason; missing for {missing}")
    return {str(k): str(v) for k, v in skips.items()}


def checkov_copy(dist: Path = DIST) -> Path:
    """A copy of ``dist`` that checkov's terraform_json parser can read.

    checkov (3.2 and 3.3.30 alike) raises "this method receives only dicts" on any
    string directly under the ``terraform`` block, such as ``required_version``. No
    check reads that key, so the copy drops it and changes nothing else.
    """
    target = CACHE / "checkov" / "dist"
    if target.exists():
        shutil.rmtree(target)
    for source in sorted(dist.rglob("*.tf.json")):
        data = json.loads(source.read_text())
        block = data.get("terraform", {})
        data["terraform"] = {k: v for k, v in block.items() if isinstance(v, dict)}
        destination = target / source.relative_to(dist)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(json.dumps(data, indent=2, sort_keys=True))
    return target


def run_checkov(
    dist: Path = DIST, extra_args: Sequence[str] = ()
) -> tuple[Outcome, dict[str, object]]:
    if not CHECKOV.exists():
        return Outcome("checkov", False, "checkov is not installed: run `make setup`"), {}
    skips = checkov_skips()
    command = [
        str(CHECKOV),
        "--directory", str(checkov_copy(dist)),
        "--framework", "terraform_json",
        "--skip-download",
        "--output", "json",
        "--compact",
        "--quiet",
        "--skip-check", ",".join(sorted(skips)),
        *extra_args,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    try:
        report = json.loads(completed.stdout or "{}")
    except json.JSONDecodeError:
        return Outcome("checkov", False, completed.stdout + completed.stderr), {}
    reports = report if isinstance(report, list) else [report]
    summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
    failures = []
    for item in reports:
        for key in summary:
            summary[key] += int(item.get("summary", {}).get(key, 0))
        for check in item.get("results", {}).get("failed_checks", []):
            failures.append(
                f"{check['check_id']} {check['check_name']}: {check['resource']} "
                f"({check['file_path']})"
            )
    ok = completed.returncode == 0 and summary["failed"] == 0 and summary["parsing_errors"] == 0
    if summary["passed"] == 0:
        ok = False
        failures.append("checkov passed no check at all: did it scan anything?")
    detail = (
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
        + ("\n" + "\n".join(failures) if failures else "")
    )
    return Outcome("checkov", ok, detail), {**summary, "failures": failures}
