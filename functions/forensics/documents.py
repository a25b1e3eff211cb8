"""The SSM Command documents that collect volatile evidence on a Linux instance.

Both run as root through SSM Run Command (``aws:runShellScript``), write each artefact to
a private temporary directory, compute its sha256 on the instance, upload it to the
evidence bucket with ``aws s3 cp --checksum-algorithm SHA256`` (S3 checks the checksum on
arrival; Object Lock requires an integrity header) and print one JSON line per artefact::

    {"name": "processes.txt", "key": "cases/.../processes.txt", "sha256": "...", "bytes": 1234}
    {"name": "memory.lime", "skipped": "neither AVML nor LiME is installed"}

The step Lambda reads those lines from the command's output and checks each object's
sha256 in the bucket against the one computed on the instance
(``logic.capture_volatile``). The upload uses the instance's own credentials, so its role
needs ``s3:PutObject`` on ``cases/*`` of the evidence bucket and ``kms:GenerateDataKey`` on
the evidence key (the module's ``evidence_writer_policy_arn``), and the AWS CLI must be
installed (it is on Amazon Linux). Run Command runs this before the instance profile is
disassociated.
"""

from __future__ import annotations

from typing import Any

# Parameters are interpolated into the script by SSM, so each is held to a strict pattern.
PARAMETERS: dict[str, Any] = {
    "Bucket": {
        "type": "String",
        "description": "Evidence bucket",
        "allowedPattern": r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    },
    "Prefix": {
        "type": "String",
        "description": "Key prefix of this case and instance",
        "allowedPattern": r"^cases/[A-Za-z0-9._-]{1,64}/i-[0-9a-f]{8,17}/volatile$",
    },
    "KmsKeyArn": {
        "type": "String",
        "description": "KMS key that encrypts the evidence (empty: the bucket's default)",
        "default": "",
        "allowedPattern": r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-f0-9-]{36}$",
    },
}

_UPLOAD = r"""set -u
umask 077
# On disk, not on a tmpfs: a memory image is as large as the memory.
work=$(mktemp -d -p /root forensics.XXXXXX)
trap 'rm -rf "$work"' EXIT
sse=(--sse aws:kms)
if [ -n "{{KmsKeyArn}}" ]; then sse+=(--sse-kms-key-id "{{KmsKeyArn}}"); fi
emit() { printf '{"name":"%s","%s":"%s"}\n' "$1" "$2" "$3"; }
keep() {
  name=$1; file=$2; key="{{Prefix}}/$name"
  sum=$(sha256sum "$file" | cut -d' ' -f1); size=$(stat -c %s "$file")
  if aws s3 cp "$file" "s3://{{Bucket}}/$key" --only-show-errors \
      --checksum-algorithm SHA256 --metadata "sha256=$sum" "${sse[@]}"; then
    printf '{"name":"%s","key":"%s","sha256":"%s","bytes":%s}\n' "$name" "$key" "$sum" "$size"
  else
    emit "$name" skipped "upload to the evidence bucket failed"
  fi
}
"""

_PROCESSES_AND_NETWORK = r"""
{ date -u +%FT%TZ; ps auxwwf; } >"$work/processes.txt" 2>&1
keep processes.txt "$work/processes.txt"
if command -v ss >/dev/null; then
  { date -u +%FT%TZ; ss -tunapo; } >"$work/network.txt" 2>&1
else
  { date -u +%FT%TZ; netstat -tunap; } >"$work/network.txt" 2>&1
fi
keep network.txt "$work/network.txt"
{ date -u +%FT%TZ; who -a; last -Fw | head -200; } >"$work/logins.txt" 2>&1
keep logins.txt "$work/logins.txt"
"""

_MEMORY = r"""
image="$work/memory.lime"
lime=$(find /lib/modules/"$(uname -r)" /usr/local/lib -name 'lime*.ko' 2>/dev/null | head -1)
if command -v avml >/dev/null; then
  avml "$image" && keep memory.lime "$image" || emit memory.lime skipped "avml failed"
elif [ -n "$lime" ]; then
  insmod "$lime" "path=$image format=lime" && keep memory.lime "$image" \
    || emit memory.lime skipped "LiME failed"
  rmmod lime 2>/dev/null || true
else
  emit memory.lime skipped "neither AVML nor LiME is installed"
fi
"""


def _document(description: str, script: str, timeout_seconds: int) -> dict[str, Any]:
    return {
        "schemaVersion": "2.2",
        "description": description,
        "parameters": PARAMETERS,
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "collect",
                "precondition": {"StringEquals": ["platformType", "Linux"]},
                "inputs": {
                    "timeoutSeconds": str(timeout_seconds),
                    "runCommand": (_UPLOAD + script).strip().splitlines(),
                },
            }
        ],
    }


def volatile_document() -> dict[str, Any]:
    return _document(
        "Playbook as Code forensics: process list, network connections and logins, each "
        "kept in the evidence bucket with its sha256.",
        _PROCESSES_AND_NETWORK,
        600,
    )


def memory_document() -> dict[str, Any]:
    return _document(
        "Playbook as Code forensics: a memory image (AVML, else LiME) kept in the evidence "
        "bucket with its sha256; skipped with the reason when neither tool is installed.",
        _MEMORY,
        7200,
    )
