"""Malformed environment files: exit status 2, a message naming the file and the key,
and dist/ exactly as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import main
from bundle import synth
from tests.conftest import tree_digest

pytestmark = pytest.mark.synth

GOOD: dict = {
    "name": "broken",
    "backend": {"bucket": "state-bucket", "region": "us-east-1"},
    "defaults": {"regions": ["us-east-1"], "modules": {"notifications": {}}},
    "accounts": [
        {"name": "one", "id": "111111111111", "role_arn": "arn:aws:iam::111111111111:role/Deploy"},
        {"name": "two", "id": "222222222222", "role_arn": "arn:aws:iam::222222222222:role/Deploy"},
    ],
}


def mutate(path: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


CASES = {
    "unknown module": (
        mutate("accounts.1.modules", {"notifcations": {}}),
        "accounts[1].modules.notifcations: unknown module",
    ),
    "unknown key": (
        mutate("accounts.0.regoins", ["us-east-1"]),
        "accounts[0].regoins: unknown key",
    ),
    "unknown module parameter": (
        mutate("accounts.1.modules", {"notifications": {"emails": ["a@example.com"]}}),
        "accounts[1].modules.notifications.emails: unknown key",
    ),
    "invalid account id": (
        mutate("accounts.1.id", "12345"),
        "accounts[1].id: must be a 12-digit AWS account id",
    ),
    "unquoted account id": (
        mutate("accounts.1.id", 222222222222),
        "accounts[1].id: Input should be a valid string",
    ),
    "bad role arn": (
        mutate("accounts.0.role_arn", "arn:aws:iam::111111111111:user/someone"),
        "accounts[0].role_arn: must be an IAM role ARN",
    ),
    "bad e-mail": (
        mutate(
            "accounts.1.modules",
            {"notifications": {"email_addresses": ["ops@example.com", "not-an-address"]}},
        ),
        "accounts[1].modules.notifications.email_addresses[1]: Must be an e-mail address",
    ),
    "bad https endpoint": (
        mutate(
            "accounts.0.modules",
            {"notifications": {"https_endpoints": ["http://insecure.example.com"]}},
        ),
        "accounts[0].modules.notifications.https_endpoints[0]: Must be an https:// URL",
    ),
    "bad parameter in defaults": (
        mutate("defaults.modules", {"notifications": {"high_severity_threshold": 11}}),
        "defaults.modules.notifications.high_severity_threshold: Must be a number from 1 to 8.9",
    ),
    "bad rate rule": (
        mutate("accounts.0.modules", {"waf_shield": {"rate_rules": [{"name": "r", "limit": 5}]}}),
        "accounts[0].modules.waf_shield.rate_rules[0]: Rate rule limits must be whole numbers",
    ),
    "typo inside a rate rule": (
        mutate("accounts.0.modules", {"waf_shield": {"rate_rules": [{"name": "r", "limt": 500}]}}),
        "accounts[0].modules.waf_shield.rate_rules[0].limt: unknown key",
    ),
    "reference to a missing module": (
        mutate(
            "accounts.1.modules",
            {"waf_shield": {"notify_topic_arn": '${module.notifications.topic_arns["high"]}'}},
        )
        | {"defaults": {"regions": ["us-east-1"]}},
        "accounts[1].modules.waf_shield.notify_topic_arn: 'notifications' is not another module",
    ),
    "reference to a missing output": (
        mutate(
            "accounts.1.modules",
            {"waf_shield": {"notify_topic_arn": "${module.notifications.topic_arm}"}},
        ),
        "module notifications has no output 'topic_arm'",
    ),
    "region-bound ids given to every region of an account": (
        mutate("defaults.regions", ["us-east-1", "eu-west-1"])
        | {
            "accounts": [
                {
                    **GOOD["accounts"][0],
                    "modules": {"nacl_blocklist": {"network_acl_ids": ["acl-0a1b2c3d4e5f67890"]}},
                }
            ]
        },
        "accounts[0].modules.nacl_blocklist.network_acl_ids: these ids exist in one region "
        "only, and an id does not say which; this value would go to every region of the "
        "account (us-east-1, eu-west-1): give it under accounts[0].region_modules.<region>",
    ),
    "an ARN of another region": (
        mutate(
            "accounts.0.region_modules",
            {
                "us-east-1": {
                    "waf_shield": {
                        "associated_resource_arns": {
                            "web": "arn:aws:elasticloadbalancing:eu-west-1:111111111111:"
                            "loadbalancer/app/web/50dc6c495c0c9188"
                        }
                    }
                }
            },
        ),
        "accounts[0].region_modules.us-east-1.waf_shield.associated_resource_arns: "
        "arn:aws:elasticloadbalancing:eu-west-1:111111111111:loadbalancer/app/web/"
        "50dc6c495c0c9188 is in eu-west-1, not in us-east-1",
    ),
    "settings for a region the account does not use": (
        mutate("accounts.1.region_modules", {"eu-west-1": {"notifications": {}}}),
        "accounts[1].region_modules.eu-west-1: not a region of this account (us-east-1)",
    ),
    "a rate rule named like the module's own rule": (
        mutate(
            "accounts.0.modules",
            {"waf_shield": {"rate_rules": [{"name": "blocklist-ipv4", "limit": 100}]}},
        ),
        "accounts[0].modules.waf_shield.rate_rules[0]: Rate rule names must differ from the "
        "module's own rules",
    ),
    "an allowlist too long for the Lambda environment": (
        mutate(
            "accounts.0.modules",
            {"waf_shield": {"allowlist_cidrs": [f"2001:db8:{i:x}::/48" for i in range(200)]}},
        ),
        "accounts[0].modules.waf_shield.allowlist_cidrs: The allowlist must fit in 3000 "
        "characters of JSON",
    ),
    "duplicate account": (
        {**GOOD, "accounts": [GOOD["accounts"][0], dict(GOOD["accounts"][0])]},
        "accounts[1].name: duplicate account name 'one' (also accounts[0])",
    ),
}


@pytest.fixture
def dist_before(dist: Path) -> dict[str, str]:
    return tree_digest(dist)


def run_synth(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main.app, ["synth", "--file", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_environment_is_rejected(
    case: str, tmp_path: Path, dist: Path, dist_before: dict[str, str]
) -> None:
    data, expected = CASES[case]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, output = run_synth(path)
    assert code == 2, output
    flat = " ".join(output.split())
    assert str(path) in flat or "broken.yaml" in flat
    assert expected in flat, output
    assert tree_digest(dist) == dist_before


def test_yaml_syntax_error_names_line(
    tmp_path: Path, dist: Path, dist_before: dict[str, str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\naccounts:\n  - name: one\n    id: [unclosed\n")
    code, output = run_synth(path)
    assert code == 2
    assert "YAML syntax error at line" in " ".join(output.split())
    assert tree_digest(dist) == dist_before


def test_duplicate_yaml_key_is_an_error(
    tmp_path: Path, dist: Path, dist_before: dict[str, str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(GOOD, sort_keys=False) + "name: again\n")
    code, output = run_synth(path)
    assert code == 2
    assert "duplicate key 'name'" in " ".join(output.split())
    assert tree_digest(dist) == dist_before


def test_name_must_match_file(tmp_path: Path, dist: Path, dist_before: dict[str, str]) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    code, output = run_synth(path)
    assert code == 2
    assert "name: must match the file name ('other')" in " ".join(output.split())
    assert tree_digest(dist) == dist_before


def test_valid_file_outside_environments_synthesises(
    tmp_path: Path, dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synthesises into a private dist/ (synth swaps the whole folder), never the session's
    shared one, which other workers are reading at the same time."""
    private = tmp_path / "dist"
    shutil.copytree(dist / "environments", private / "environments")
    monkeypatch.setattr(synth, "DIST", private)
    monkeypatch.setattr(main, "DIST", private)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    code, output = run_synth(path)
    assert code == 0, output
    assert (private / "environments" / "broken" / "two-us-east-1" / "main.tf.json").exists()
    assert (private / "environments" / "example").is_dir(), "other environments are kept"
    assert not (dist / "environments" / "broken").exists()
