"""Synthesis: functions -> zips, constructs -> modules, environments -> root stacks.

Everything is built in a staging folder beside ``dist/`` and swapped in only when every
step succeeded, so a failure (a bad environment file, a construct error) leaves
``dist/`` exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle import environments, packaging
from bundle.module import ModuleStack
from bundle.paths import DIST, ROOT
from bundle.readme import module_readme
from bundle.versions import (
    AWS_PROVIDER_CONSTRAINT,
    CDKTN_TARGET_VERSIONS,
    STACK_TERRAFORM_CONSTRAINT,
    TERRAFORM_CONSTRAINT,
)

Progress = Callable[[str], None]


@dataclass
class Summary:
    functions: dict[str, str] = field(default_factory=dict)  # name -> sha256
    modules: dict[str, Path] = field(default_factory=dict)
    stacks: list[tuple[str, str, int, Path]] = field(default_factory=list)  # env, stack, wave
    seconds: float = 0.0


class SynthError(Exception):
    pass


def _strip_metadata(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_metadata(v) for k, v in value.items() if k != "//"}
    if isinstance(value, list):
        return [_strip_metadata(v) for v in value]
    return value


def _terraform_block(data: dict[str, Any], keep_backend: bool) -> None:
    block = data.setdefault("terraform", {})
    if not keep_backend:
        block.pop("backend", None)
    block["required_version"] = STACK_TERRAFORM_CONSTRAINT if keep_backend else TERRAFORM_CONSTRAINT
    block.setdefault("required_providers", {})["aws"] = {
        "source": "hashicorp/aws",
        "version": AWS_PROVIDER_CONSTRAINT,
    }


def _assert_portable(data: dict[str, Any], where: str, forbidden: Iterable[str]) -> None:
    text = json.dumps(data)
    for needle in forbidden:
        if needle and needle in text:
            raise SynthError(f"{where}: generated JSON contains the absolute path {needle}")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _synth_app(build: Callable[[Any], object], scratch: Path) -> Path:
    from cdktn import App

    app = App(outdir=str(scratch), context={"targetVersions": CDKTN_TARGET_VERSIONS})
    build(app)
    app.synth()
    return scratch / "stacks"


def synth(
    environment_paths: Sequence[Path],
    progress: Progress = lambda _: None,
    keep_other_environments: bool = True,
) -> Summary:
    started = time.perf_counter()
    progress("validating environment files")
    loaded = [environments.load(path) for path in environment_paths]

    from modules import REGISTRY

    summary = Summary()
    DIST.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{DIST.name}-staging-", dir=DIST.parent))
    forbidden = {str(ROOT), str(staging), tempfile.gettempdir() + os.sep}
    try:
        for name in packaging.function_names():
            progress(f"packaging function {name}")
            summary.functions[name] = packaging.build_zip(
                name, staging / "functions" / f"{name}.zip"
            )
        with tempfile.TemporaryDirectory(prefix="playbook-synth-") as scratch:
            forbidden.add(scratch)
            progress(f"synthesising {len(REGISTRY)} module(s)")
            stacks_dir = _synth_app(
                lambda app: [module(app) for module in REGISTRY.values()], Path(scratch) / "m"
            )
            for name, module in sorted(REGISTRY.items()):
                _write_module(
                    module, stacks_dir / name / "cdk.tf.json", staging, summary, forbidden
                )
            for environment in loaded:
                progress(
                    f"synthesising environment {environment.name} "
                    f"({len(environment.stacks)} stacks)"
                )
                _write_environment(
                    environment, Path(scratch) / environment.name, staging, summary, forbidden
                )
        if keep_other_environments and (DIST / "environments").is_dir():
            fresh = {environment.name for environment in loaded}
            for previous in sorted((DIST / "environments").iterdir()):
                if previous.is_dir() and previous.name not in fresh:
                    shutil.copytree(previous, staging / "environments" / previous.name)
        # Released archives are published artefacts: a new build never replaces them.
        if (DIST / "releases").is_dir():
            shutil.copytree(DIST / "releases", staging / "releases")
        _swap(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _write_module(
    module: type[ModuleStack],
    synthesised: Path,
    staging: Path,
    summary: Summary,
    forbidden: set[str],
) -> None:
    data = _strip_metadata(json.loads(synthesised.read_text()))
    data.pop("provider", None)
    _terraform_block(data, keep_backend=False)
    _assert_portable(data, f"module {module.name}", forbidden)
    target = staging / "modules" / module.name
    _write_json(target / "main.tf.json", data)
    sha = None
    if module.function:
        shutil.copyfile(staging / "functions" / f"{module.function}.zip", target / "function.zip")
        sha = summary.functions[module.function]
    for extra in module.extra_functions:
        shutil.copyfile(staging / "functions" / f"{extra}.zip", target / f"{extra}.zip")
    (target / "README.md").write_text(module_readme(module, sha), encoding="utf-8")
    summary.modules[module.name] = DIST / "modules" / module.name


def _write_environment(
    environment: environments.Environment,
    scratch: Path,
    staging: Path,
    summary: Summary,
    forbidden: set[str],
) -> None:
    from bundle.stacks import EnvironmentStack

    stacks_dir = _synth_app(
        lambda app: [EnvironmentStack(app, stack) for stack in environment.stacks], scratch
    )
    for stack in environment.stacks:
        data = _strip_metadata(json.loads((stacks_dir / stack.name / "cdk.tf.json").read_text()))
        _terraform_block(data, keep_backend=True)
        _assert_portable(data, f"stack {environment.name}/{stack.name}", forbidden)
        relative = Path("environments") / environment.name / stack.name
        _write_json(staging / relative / "main.tf.json", data)
        summary.stacks.append((environment.name, stack.name, stack.account.wave, DIST / relative))


def _swap(staging: Path) -> None:
    """Replace dist/ with the staging folder; the old tree is removed afterwards."""
    previous = DIST.with_name(f".{DIST.name}-previous-{os.getpid()}")
    if DIST.exists():
        DIST.rename(previous)
    staging.rename(DIST)
    shutil.rmtree(previous, ignore_errors=True)
