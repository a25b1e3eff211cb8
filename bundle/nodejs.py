"""Make sure jsii (under cdktn) runs on a Node.js it supports.

jsii supports Node 22 and 24; on older Node it prints an end-of-life banner. The setup
script provisions Node 22 from the npm registry into ``.tools/node`` when the system
Node is older; this module puts that Node first on PATH before cdktn is imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from bundle.paths import ROOT

MINIMUM_MAJOR = 22
PROVISIONED_BIN = ROOT / ".tools" / "node" / "node_modules" / ".bin"


class NodeError(RuntimeError):
    pass


def _major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def ensure_supported_node() -> str:
    """Return the path of a supported ``node``, adjusting PATH so jsii finds it."""
    if (PROVISIONED_BIN / "node").exists():
        path = os.environ.get("PATH", "")
        if not path.startswith(str(PROVISIONED_BIN)):
            os.environ["PATH"] = f"{PROVISIONED_BIN}{os.pathsep}{path}"
    node = shutil.which("node")
    if node is None:
        raise NodeError("Node.js is required by cdktn (jsii); run `make setup`")
    major = _major(node)
    if major < MINIMUM_MAJOR:
        raise NodeError(
            f"{node} is Node {major}; jsii needs Node {MINIMUM_MAJOR}+. "
            "Run `make setup` to provision it into .tools/node."
        )
    return node
