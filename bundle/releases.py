"""Versioned modules: ``python main.py release --version X.Y.Z``.

Each generated module becomes ``dist/releases/<module>-X.Y.Z.zip`` (its ``main.tf.json``,
README and the remediator's ``function.zip``, as a deterministic zip: the same build gives
the same bytes), listed with its sha256 in ``dist/releases/SHA256SUMS`` (the format
``sha256sum -c`` reads). Publish the archives where ``releases.source`` in an environment
file points (an S3 bucket, or tag the repository for a ``git::`` source), and pin a wave
or an account to a version with ``module_versions``: its stacks then take the module from
that release instead of the build beside them, so a canary wave can run a newer module
than the waves after it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from bundle.packaging import write_zip
from bundle.paths import DIST

VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
CHECKSUMS = "SHA256SUMS"


class ReleaseError(Exception):
    pass


def check_version(version: str) -> None:
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"--version must be X.Y.Z (such as 1.4.0), got {version!r}")


def release(version: str, dist: Path = DIST) -> dict[str, str]:
    """Write every module of ``dist/modules`` as a release archive; returns archive name
    -> sha256 (also written to ``SHA256SUMS``, which lists every archive of the folder)."""
    check_version(version)
    modules = sorted(p.parent for p in (dist / "modules").glob("*/main.tf.json"))
    if not modules:
        raise ReleaseError(f"{dist}/modules holds no module: run `python main.py synth` first")
    folder = dist / "releases"
    written = {}
    for module in modules:
        name = f"{module.name}-{version}.zip"
        entries = [(p.name, p) for p in sorted(module.iterdir()) if p.is_file()]
        temporary = folder / f".{name}.tmp"
        written[name] = write_zip(temporary, entries)
        temporary.replace(folder / name)
    sums = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.zip"))
    }
    text = "".join(f"{digest}  {name}\n" for name, digest in sums.items())
    (folder / f".{CHECKSUMS}.tmp").write_text(text, encoding="utf-8")
    (folder / f".{CHECKSUMS}.tmp").replace(folder / CHECKSUMS)
    return written
