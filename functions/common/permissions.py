"""Declared IAM permissions: each remediator lists what it calls, the module turns the
list into its Lambda role policy, and a meta-test fails when code calls an undeclared
action.

``resource`` is a symbolic name that the module resolves to its own ARNs (for example
``"topics"`` -> the module's SNS topic ARNs). ``"*"`` is allowed only for actions AWS does
not scope to resources (say so in ``why``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Permission:
    action: str
    resource: str
    why: str

    def __post_init__(self) -> None:
        service, _, name = self.action.partition(":")
        if not service or not name or "*" in self.action:
            raise ValueError(f"permission action must be 'service:Action', got {self.action!r}")
        if not self.why:
            raise ValueError(f"permission {self.action} needs a reason")


def actions(permissions: tuple[Permission, ...]) -> frozenset[str]:
    return frozenset(p.action for p in permissions)
