#!/usr/bin/env bash
# Lints sam-template.yaml offline with cfn-lint and `sam validate --lint` (venv under the emulator cache).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DIALS_EMU_HOME:-$HOME/.cache/dials-emulators}/sam-venv"
if [[ ! -f "$venv/.dials-installed" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==1.*" "aws-sam-cli==1.*"
  touch "$venv/.dials-installed"
fi
export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test SAM_CLI_TELEMETRY=0
"$venv/bin/cfn-lint" "$here/../sam-template.yaml"
"$venv/bin/sam" validate --lint -t "$here/../sam-template.yaml"
