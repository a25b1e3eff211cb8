#!/usr/bin/env bash
# Provision everything the project needs, idempotently, from package registries only:
#   .venv          the project and its dev tools
#   .venv-checkov  checkov alone (it pins its own boto3 and clashes with python-hcl2)
#   .tools/node    a jsii-supported Node.js (>= 22) when the system one is older
#   .tools/asl     asl-validator, the Amazon States Language validator the tests run
# Each step records a stamp keyed on its inputs, so a second run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
STAMPS="$ROOT/.cache/stamps"
mkdir -p "$STAMPS"

stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { printf '%s' "$2" >"$STAMPS/$1"; }

key=$(cat pyproject.toml | sha256sum | cut -c1-16)
if ! stamp_ok venv "$key" || [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv (project + dev extra)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  stamp_set venv "$key"
fi

CHECKOV_SPEC="checkov==3.3.30"
if ! stamp_ok checkov "$CHECKOV_SPEC" || [[ ! -x .venv-checkov/bin/checkov ]]; then
  echo "setup: creating .venv-checkov ($CHECKOV_SPEC)"
  "$PYTHON" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet --upgrade pip
  .venv-checkov/bin/python -m pip install --quiet "$CHECKOV_SPEC"
  stamp_set checkov "$CHECKOV_SPEC"
fi

# jsii supports Node 22 and 24 only; provision Node 22 from the npm registry when needed.
NODE_SPEC="node@22"
system_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || echo 0)
if [[ "${system_major:-0}" -lt 22 ]]; then
  if ! stamp_ok node "$NODE_SPEC" || [[ ! -x .tools/node/node_modules/.bin/node ]]; then
    echo "setup: installing $NODE_SPEC into .tools/node (system node is v${system_major})"
    mkdir -p .tools/node
    npm install --silent --no-audit --no-fund --prefix .tools/node "$NODE_SPEC" >/dev/null
    stamp_set node "$NODE_SPEC"
  fi
fi
# The forensics workflow's state machine is checked by a real Amazon States Language
# validator (tests/unit/test_forensics_workflow.py).
ASL_SPEC="asl-validator@4.0.0"
if ! stamp_ok asl "$ASL_SPEC" || [[ ! -x .tools/asl/node_modules/.bin/asl-validator ]]; then
  echo "setup: installing $ASL_SPEC into .tools/asl"
  mkdir -p .tools/asl
  npm install --silent --no-audit --no-fund --prefix .tools/asl "$ASL_SPEC" >/dev/null
  stamp_set asl "$ASL_SPEC"
fi
# Graphviz renders the rollout diagrams (`python main.py diagram`, the diagrams package).
if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing graphviz from Debian's packages"
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends graphviz >/dev/null
  else
    echo "setup: graphviz (dot) is missing and there is no apt-get: install it to render diagrams" >&2
    exit 1
  fi
fi
echo "setup: ready"
