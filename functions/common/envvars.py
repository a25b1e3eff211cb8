"""Values that functions read from their environment variables."""

from __future__ import annotations

import json
from typing import Any


def json_strings(name: str, raw: Any) -> Any:
    """A JSON list of strings from the variable ``name`` (each stripped); anything that is
    not a string, as given (a field validator's ``mode="before"`` input)."""
    if not isinstance(raw, str):
        return raw
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc.msg}") from None
    if not isinstance(decoded, list) or not all(isinstance(item, str) for item in decoded):
        raise ValueError(f"{name} must be a JSON list of strings, got {raw[:80]!r}")
    return tuple(item.strip() for item in decoded)
