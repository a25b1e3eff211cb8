"""Deterministic Lambda packages.

``functions/<name>/`` plus ``functions/common/`` become one zip whose layout mirrors the
repository (handler ``functions.<name>.handler.lambda_handler``). Entries are sorted,
timestamps fixed, modes normalised and compiled files left out, so the same source
always gives the same bytes and the same sha256 (and Terraform sees no spurious change).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from bundle.paths import FUNCTIONS

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
FILE_MODE = 0o100644 << 16
EXCLUDED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


def function_names() -> list[str]:
    return sorted(
        p.name
        for p in FUNCTIONS.iterdir()
        if p.is_dir() and p.name != "common" and (p / "handler.py").exists()
    )


def _sources(name: str) -> list[tuple[str, Path]]:
    roots = [FUNCTIONS / "common", FUNCTIONS / name]
    entries = [("functions/__init__.py", FUNCTIONS / "__init__.py")]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"function source folder {root} does not exist")
        for path in root.rglob("*"):
            relative = path.relative_to(FUNCTIONS.parent)
            if path.is_dir() or EXCLUDED_PARTS & set(relative.parts):
                continue
            if path.suffix in EXCLUDED_SUFFIXES:
                continue
            entries.append((relative.as_posix(), path))
    return sorted(entries)


def build_zip(name: str, destination: Path) -> str:
    """Write the zip of function ``name`` to ``destination``; returns its sha256."""
    return write_zip(destination, _sources(name))


def write_zip(destination: Path, entries: list[tuple[str, Path]]) -> str:
    """A deterministic zip of ``entries`` (archive name, file) at ``destination``: sorted
    entries, fixed timestamps and modes. Returns its sha256."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode bits mean the same everywhere
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return hashlib.sha256(destination.read_bytes()).hexdigest()
