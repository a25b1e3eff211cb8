"""Where things live. Everything is relative to the repository root."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
ENVIRONMENTS = ROOT / "environments"
DIST = Path(os.environ.get("PLAYBOOK_DIST", ROOT / "dist"))
CACHE = ROOT / ".cache"
CHECKOV_SKIPS = ROOT / "checkov-skips.yaml"


def relative(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it (for messages)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
