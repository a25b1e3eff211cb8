"""Rollouts: terraform init/plan/apply for an environment's stacks, wave by wave.

Stacks of one wave run concurrently (at most ``--parallel`` and the wave's
``max_parallel``); waves run in ascending order, and a wave with a failure stops the
rollout (unless its ``stop_on_failure`` is false): the later waves are reported as
skipped and never touched.

Terraform works in a copy of what synthesis wrote (``.cache/rollout/<env>/`` by default:
the generated modules and the environment's stack folders), so ``dist/`` stays
byte-for-byte the build, and each stack folder keeps what the run produced beside its
``main.tf.json``: ``tfplan`` (the saved plan ``apply`` applies), ``tfplan.json``
(``terraform show -json``), ``tfplan.txt`` (the readable plan) and ``terraform.log``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bundle import terraform
from bundle.environments import Environment, Stack
from bundle.paths import CACHE, DIST, relative

Action = Literal["plan", "apply"]
WORKDIR = CACHE / "rollout"
PLAN_FILE = "tfplan"
OVERRIDE_FILE = "override.tf.json"


class RolloutError(Exception):
    """A rollout that cannot start (nothing synthesised, an unknown account or wave)."""


@dataclass
class StackRun:
    """One stack's part of a rollout, updated as it runs."""

    stack: Stack
    directory: Path
    status: str = "queued"  # queued, init, plan, apply, planned, applied, failed, skipped
    adds: int = 0
    changes: int = 0
    destroys: int = 0
    started: float | None = None
    finished: float | None = None
    error: str = ""

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def plan_json(self) -> Path:
        return self.directory / f"{PLAN_FILE}.json"

    @property
    def plan_text(self) -> Path:
        return self.directory / f"{PLAN_FILE}.txt"


@dataclass
class Rollout:
    environment: str
    action: Action
    runs: list[StackRun]
    stopped_at_wave: int | None = None
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ok(self) -> bool:
        return not any(run.failed for run in self.runs) and self.stopped_at_wave is None


def select(
    environment: Environment,
    waves: Iterable[int] | None = None,
    accounts: Iterable[str] | None = None,
) -> list[Stack]:
    """The stacks a rollout covers: ``waves`` by number, ``accounts`` by account name, id
    or stack name (``<account>-<region>``); every stack when neither is given."""
    stacks = list(environment.stacks)
    if waves:
        wanted = set(waves)
        unknown = wanted - {stack.wave for stack in stacks}
        if unknown:
            missing = ", ".join(map(str, sorted(unknown)))
            raise RolloutError(
                f"environment {environment.name} has no wave {missing} "
                f"(waves: {', '.join(map(str, environment.waves()))})"
            )
        stacks = [stack for stack in stacks if stack.wave in wanted]
    if accounts:
        wanted_accounts = {name for item in accounts for name in item.split(",") if name}
        names = {
            key for stack in environment.stacks
            for key in (stack.account.name, stack.account.id, stack.name)
        }  # fmt: skip
        strangers = wanted_accounts - names
        if strangers:
            raise RolloutError(
                f"environment {environment.name} has no account or stack "
                f"{', '.join(sorted(strangers))} (accounts: "
                f"{', '.join(dict.fromkeys(s.account.name for s in environment.stacks))})"
            )
        stacks = [
            stack
            for stack in stacks
            if wanted_accounts & {stack.account.name, stack.account.id, stack.name}
        ]
    return stacks


def stage(
    environment: Environment,
    stacks: Sequence[Stack],
    dist: Path = DIST,
    workdir: Path = WORKDIR,
    override: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Copy the generated modules and ``stacks`` into ``workdir/<env>/`` and return each
    stack's folder there. A stack folder keeps its ``.terraform/`` between runs (init is
    then quick), and ``override`` (Terraform override-file JSON: endpoints, credentials)
    becomes its ``override.tf.json``."""
    built = dist / "environments" / environment.name
    missing = [s.name for s in stacks if not (built / s.name / "main.tf.json").is_file()]
    if missing:
        raise RolloutError(
            f"{relative(built)} has no stack {', '.join(missing)}: run "
            f"`python main.py synth --env {environment.name}` first"
        )
    root = workdir / environment.name
    modules = root / "modules"
    if modules.exists():
        shutil.rmtree(modules)
    shutil.copytree(dist / "modules", modules)
    folders = {}
    for stack in stacks:
        folder = root / "environments" / environment.name / stack.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built / stack.name / "main.tf.json", folder / "main.tf.json")
        for stale in (f"{PLAN_FILE}", f"{PLAN_FILE}.json", f"{PLAN_FILE}.txt", "terraform.log"):
            (folder / stale).unlink(missing_ok=True)
        if override is not None:
            (folder / OVERRIDE_FILE).write_text(json.dumps(override, indent=2, sort_keys=True))
        else:
            (folder / OVERRIDE_FILE).unlink(missing_ok=True)
        folders[stack.name] = folder
    return folders


def count_changes(plan: Mapping[str, Any]) -> tuple[int, int, int]:
    """(adds, changes, destroys) as Terraform counts them: a replacement is one of each
    add and destroy."""
    adds = changes = destroys = 0
    for change in plan.get("resource_changes", []):
        actions = change.get("change", {}).get("actions", [])
        adds += "create" in actions
        changes += "update" in actions
        destroys += "delete" in actions
    return adds, changes, destroys


Listener = Callable[[Rollout], None]


def run(
    environment: Environment,
    action: Action,
    *,
    stacks: Sequence[Stack] | None = None,
    dist: Path = DIST,
    workdir: Path = WORKDIR,
    parallel: int = 4,
    backend_config: Sequence[str] = (),
    override: Mapping[str, Any] | None = None,
    listener: Listener = lambda _: None,
) -> Rollout:
    """Plan (or plan and apply) ``stacks`` of ``environment``, wave by wave."""
    if parallel < 1:
        raise RolloutError("--parallel must be at least 1")
    chosen = list(environment.stacks if stacks is None else stacks)
    if not chosen:
        raise RolloutError(f"environment {environment.name}: no stack selected")
    folders = stage(environment, chosen, dist, workdir, override)
    rollout = Rollout(
        environment.name, action, [StackRun(stack, folders[stack.name]) for stack in chosen]
    )
    started = time.monotonic()
    listener(rollout)
    waves: dict[int, list[StackRun]] = {}
    for item in rollout.runs:
        waves.setdefault(item.stack.wave, []).append(item)
    warm = _plugin_cache_warm()
    for number in sorted(waves):
        if rollout.stopped_at_wave is not None:
            for item in waves[number]:
                item.status = "skipped"
                item.error = f"wave {rollout.stopped_at_wave} failed"
            continue
        runs = waves[number]
        workers = min(parallel, environment.wave(number).max_parallel, len(runs))
        if not warm:
            # The first init fills the shared plugin cache alone; the others only link
            # to it (bundle/terraform.py explains why concurrent fills race).
            _run_stack(rollout, runs[0], action, backend_config, listener)
            runs, warm = runs[1:], True
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            list(
                pool.map(
                    lambda item: _run_stack(rollout, item, action, backend_config, listener), runs
                )
            )
        if any(item.failed for item in waves[number]) and environment.wave(number).stop_on_failure:
            rollout.stopped_at_wave = number
    rollout.seconds = time.monotonic() - started
    listener(rollout)
    return rollout


def _plugin_cache_warm() -> bool:
    cache = terraform.cli_config().parent / "plugin-cache" / terraform.AWS_PROVIDER
    return cache.is_dir() and any(cache.iterdir())


def _run_stack(
    rollout: Rollout,
    item: StackRun,
    action: Action,
    backend_config: Sequence[str],
    listener: Listener,
) -> None:
    folder = item.directory
    log = folder / "terraform.log"

    def step(status: str, args: list[str]) -> terraform.Result:
        with rollout.lock:
            item.status = status
        listener(rollout)
        result = terraform.run(args, folder)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"$ terraform {' '.join(args)}\n{result.output}\n")
        if not result.ok:
            raise _StepFailed(f"terraform {args[0]} failed:\n{result.output.strip()}")
        return result

    item.started = time.monotonic()
    try:
        step(
            "init",
            [
                "init", "-input=false", "-no-color", "-reconfigure",
                *[f"-backend-config={value}" for value in backend_config],
            ],
        )  # fmt: skip
        planned = step("plan", ["plan", "-input=false", "-no-color", f"-out={PLAN_FILE}"])
        item.plan_text.write_text(planned.output, encoding="utf-8")
        shown = terraform.run(["show", "-json", PLAN_FILE], folder)
        if not shown.ok:
            raise _StepFailed(f"terraform show failed:\n{shown.output.strip()}")
        item.plan_json.write_text(shown.output, encoding="utf-8")
        item.adds, item.changes, item.destroys = count_changes(json.loads(shown.output))
        if action == "apply":
            step("apply", ["apply", "-input=false", "-no-color", PLAN_FILE])
        final = "applied" if action == "apply" else "planned"
    except _StepFailed as failure:
        final, item.error = "failed", str(failure)
    item.finished = time.monotonic()
    with rollout.lock:
        item.status = final
    listener(rollout)


class _StepFailed(Exception):
    pass


def markdown_summary(rollout: Rollout) -> str:
    """The rollout as GitHub-flavoured Markdown (a CI job summary): the table, then each
    stack's plan folded."""
    lines = [
        f"### {rollout.action} {rollout.environment}: "
        + ("ok" if rollout.ok else f"stopped at wave {rollout.stopped_at_wave}"),
        "",
        "| wave | stack | account | result | add | change | destroy | seconds |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for item in rollout.runs:
        lines.append(
            f"| {item.stack.wave} | {item.stack.name} | {item.stack.account.id} | {item.status} "
            f"| {item.adds} | {item.changes} | {item.destroys} | {item.seconds:.0f} |"
        )
    for item in rollout.runs:
        if item.plan_text.exists() or item.error:
            text = item.error or item.plan_text.read_text(encoding="utf-8")
            lines += [
                "",
                f"<details><summary>{item.stack.name}</summary>",
                "",
                "```",
                text.strip(),
                "```",
                "</details>",
            ]
    return "\n".join(lines) + "\n"
