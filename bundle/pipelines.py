"""CI definitions for an environment's rollout, on engines teams already run.

* GitHub Actions: per wave, a plan job (pull requests; the plan goes to the job summary)
  and an apply job (pushes to the environment's branch, behind a GitHub environment per
  wave, so a wave can wait for a reviewer). Each job has a matrix of the wave's stacks,
  capped at the wave's ``max_parallel``; waves are chained with ``needs``, so a failure in
  a wave stops the later ones unless that wave says ``stop_on_failure: false``.
  Credentials come from OpenID Connect (no stored keys).
* Atlantis: a project per stack, ordered by wave (``execution_order_group``) and
  ``depends_on`` the previous wave's projects, with a repository workflow that runs the
  same ``python main.py plan`` and applies the saved plan.

Both run this repository's own CLI, so CI and a laptop plan the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

from bundle.environments import Environment
from bundle.orchestration import PLAN_FILE, WORKDIR
from bundle.paths import ROOT

Format = Literal["github", "atlantis"]
ROLE_VARIABLE = "${{ vars.PLAYBOOK_CI_ROLE_ARN }}"
# Inputs that change what a stack deploys; a change to any of them plans again.
WATCHED = ("bundle/**", "modules/**", "functions/**", "main.py", "pyproject.toml")


def _job_id(phase: str, wave: int) -> str:
    return f"{phase}-wave-{wave}"


def github_workflow(environment: Environment) -> dict[str, Any]:
    settings = environment.pipeline
    region = environment.backend.region if environment.backend else "us-east-1"
    waves = environment.waves()
    env_file = f"environments/{environment.name}.yaml"
    jobs: dict[str, Any] = {}
    for phase in ("plan", "apply"):
        previous: int | None = None
        for number, stacks in waves.items():
            wave = environment.wave(number)
            on_event = (
                "github.event_name == 'pull_request'"
                if phase == "plan"
                else f"github.event_name == 'push' && github.ref == 'refs/heads/{settings.branch}'"
            )
            condition = on_event
            if previous is not None and not environment.wave(previous).stop_on_failure:
                # The previous wave may fail without stopping this one.
                condition = f"!cancelled() && {on_event}"
            command = (
                f"python main.py {phase} --env {environment.name} "
                '--accounts "${{ matrix.stack }}" --summary "$GITHUB_STEP_SUMMARY"'
            )
            job: dict[str, Any] = {
                "name": f"{phase} wave {number}" + (f" ({wave.name})" if wave.name else ""),
                "if": f"${{{{ {condition} }}}}",
                "runs-on": "ubuntu-latest",
                "permissions": {"contents": "read", "id-token": "write"},
                "strategy": {
                    "fail-fast": False,
                    "max-parallel": wave.max_parallel,
                    "matrix": {
                        "include": [
                            {"stack": s.name, "account": s.account.id, "region": s.region}
                            for s in stacks
                        ]
                    },
                },
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {
                        "uses": "actions/setup-python@v5",
                        "with": {"python-version": settings.python_version},
                    },
                    {"uses": "actions/setup-node@v4", "with": {"node-version": "22"}},
                    {
                        "uses": "hashicorp/setup-terraform@v3",
                        "with": {
                            "terraform_version": settings.terraform_version,
                            "terraform_wrapper": False,
                        },
                    },
                    {
                        "name": "AWS credentials (OpenID Connect)",
                        "uses": "aws-actions/configure-aws-credentials@v4",
                        "with": {
                            "role-to-assume": settings.role_arn or ROLE_VARIABLE,
                            "role-session-name": f"playbook-{phase}-${{{{ matrix.stack }}}}",
                            "aws-region": region,
                        },
                    },
                    {"name": "Install", "run": "python -m pip install -e ."},
                    {"name": "Synthesise", "run": f"python main.py synth --env {environment.name}"},
                    {"name": f"terraform {phase} ${{{{ matrix.stack }}}}", "run": command},
                ],
            }
            if phase == "apply":
                job["environment"] = f"{environment.name}-wave-{number}"
            if previous is not None:
                job["needs"] = [_job_id(phase, previous)]
            jobs[_job_id(phase, number)] = job
            previous = number
    return {
        "name": f"playbook-as-code rollout: {environment.name}",
        "on": {
            "pull_request": {"branches": [settings.branch], "paths": [env_file, *WATCHED]},
            "push": {"branches": [settings.branch], "paths": [env_file, *WATCHED]},
        },
        "permissions": {"contents": "read"},
        # One rollout of an environment at a time; a newer push waits rather than cancels
        # an apply half way.
        "concurrency": {"group": f"playbook-{environment.name}", "cancel-in-progress": False},
        "jobs": jobs,
    }


def atlantis_config(environment: Environment) -> dict[str, Any]:
    workflow = f"playbook-{environment.name}"
    folder = (WORKDIR / environment.name / "environments" / environment.name).relative_to(ROOT)
    stack_dir = f'"{folder}/$PROJECT_NAME"'
    projects = []
    previous: list[str] = []
    for number, stacks in environment.waves().items():
        names = [stack.name for stack in stacks]
        for name in names:
            project: dict[str, Any] = {
                "name": name,
                "dir": ".",
                "workflow": workflow,
                "execution_order_group": number,
                "autoplan": {
                    "enabled": True,
                    "when_modified": [f"environments/{environment.name}.yaml", *WATCHED],
                },
            }
            if previous:
                project["depends_on"] = list(previous)
            projects.append(project)
        previous = names
    synth = f"python main.py synth --env {environment.name}"
    return {
        "version": 3,
        "automerge": False,
        "parallel_plan": True,
        "parallel_apply": True,
        "abort_on_execution_order_fail": True,
        "projects": projects,
        "workflows": {
            workflow: {
                "plan": {
                    "steps": [
                        {"run": synth},
                        {
                            "run": f"python main.py plan --env {environment.name} "
                            '--accounts "$PROJECT_NAME"'
                        },
                        {"run": f'cp {stack_dir}/{PLAN_FILE} "$PLANFILE"'},
                        {"run": f"terraform -chdir={stack_dir} show -no-color {PLAN_FILE}"},
                    ]
                },
                "apply": {
                    "steps": [
                        {
                            "run": f"terraform -chdir={stack_dir} apply -input=false "
                            '-no-color "$PLANFILE"'
                        }
                    ]
                },
            }
        },
    }


def render(environment: Environment, form: Format) -> str:
    document = github_workflow(environment) if form == "github" else atlantis_config(environment)
    header = (
        f"# Generated by `python main.py pipeline --env {environment.name} --format {form}`"
        f" from environments/{environment.name}.yaml; do not edit by hand.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=100)


def default_output(environment: Environment, form: Format, dist: Path) -> Path:
    name = f"playbook-{environment.name}.yml" if form == "github" else "atlantis.yaml"
    return dist / "pipelines" / environment.name / form / name
