#!/usr/bin/env bash
# Installs the two local S3 + SQS emulators into virtualenvs outside the repository:
#
#   ${DIALS_EMU_HOME:-$HOME/.cache/dials-emulators}/localstack-venv   localstack-core 2026.3.0 (Python >= 3.12)
#   ${DIALS_EMU_HOME:-$HOME/.cache/dials-emulators}/moto-venv         moto server 5.2.5 (Python >= 3.11; also
#                                                                    boto3 for init.py / smoke.py)
#
#   bash localstack/install.sh              # both
#   bash localstack/install.sh localstack   # only one of them (localstack | moto)
#
# Idempotent: a venv whose marker file (.dials-installed) matches the requested spec and pin file is left
# alone; a half-done install (no marker) is completed; a venv with another spec/pins or a broken interpreter
# is recreated.
#
# Environment:
#   DIALS_EMU_HOME         where the venvs live (default $HOME/.cache/dials-emulators)
#   DIALS_EMU_PYTHON313    interpreter for the LocalStack venv (default: pyenv's 3.13.0, else python3.13 /
#                          python3.12 on PATH)
#   DIALS_EMU_PYTHON       interpreter for the moto venv (default python3 if >= 3.11, else the LocalStack one)
#
# Pins: constraints-py313.txt (LocalStack) and constraints-moto.txt (moto), both `pip freeze` of working venvs.
# moto's "server" extra is not needed for S3 + SQS: flask + flask-cors are what moto_server needs; "server" adds
# cfn-lint, docker, aws-xray-sdk, ... (26 s and 317 MB instead of 8 s and 140 MB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${DIALS_EMU_HOME:-$HOME/.cache/dials-emulators}"
home="$(mkdir -p "$home" && cd "$home" && pwd)"
constraints="$here/constraints-py313.txt"
moto_constraints="$here/constraints-moto.txt"

LOCALSTACK_SPEC='localstack-core[runtime]==2026.3.0'
MOTO_SPEC='moto[s3,sqs]==5.2.5'
MOTO_EXTRA=(flask flask-cors)

log() { echo "install.sh: $*" >&2; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

# Runs "$1" and succeeds when it is a working Python >= 3.12 (pyenv shims for versions that are not
# selected exist on PATH but fail, so existence is not enough).
py_ok_312() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python313() {
  local cand
  if [[ -n "${DIALS_EMU_PYTHON313:-}" ]]; then
    py_ok_312 "$DIALS_EMU_PYTHON313" || die "DIALS_EMU_PYTHON313=$DIALS_EMU_PYTHON313 is not a working Python >= 3.12"
    echo "$DIALS_EMU_PYTHON313"; return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    cand="$(pyenv root)/versions/3.13.0/bin/python3"
    if py_ok_312 "$cand"; then echo "$cand"; return; fi
  fi
  for cand in python3.13 python3.12; do
    if command -v "$cand" >/dev/null 2>&1 && py_ok_312 "$cand"; then command -v "$cand"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for cand in "$(pyenv root)"/versions/3.13*/bin/python3 "$(pyenv root)"/versions/3.12*/bin/python3; do
      if py_ok_312 "$cand"; then echo "$cand"; return; fi
    done
  fi
  die "LocalStack needs Python 3.13 (or 3.12): none found. Install one (e.g. 'pyenv install 3.13.0') or set DIALS_EMU_PYTHON313=/path/to/python3.13"
}

# install_venv NAME PYTHON MARKER_TEXT PIP_ARGS...
install_venv() {
  local name="$1" python="$2" want="$3"; shift 3
  local venv="$home/$name" marker="$home/$name/.dials-installed"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]] && "$venv/bin/python" -c '' >/dev/null 2>&1; then
    log "$name: already installed ($venv)"
    return
  fi
  local t0=$SECONDS
  if [[ -f "$marker" ]]; then
    log "$name: spec or pins changed ('$(cat "$marker")' → '$want'), recreating"
    rm -rf "$venv"
  elif [[ -d "$venv" ]] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    log "$name: interpreter broken, recreating"
    rm -rf "$venv"
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    log "$name: creating venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$venv"
  fi
  rm -f "$marker"
  log "$name: pip install $*"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$@"
  printf '%s' "$want" >"$marker"
  log "$name: installed in $((SECONDS - t0)) s ($venv)"
}

install_localstack() {
  [[ -f "$constraints" ]] || die "missing $constraints"
  local py; py="$(find_python313)"
  # The marker records the spec and a hash of the pin file, so editing the pins triggers a re-install.
  local want; want="$LOCALSTACK_SPEC $(cksum <"$constraints" | cut -d' ' -f1)"
  install_venv localstack-venv "$py" "$want" "$LOCALSTACK_SPEC" -c "$constraints"
  "$home/localstack-venv/bin/python" -c 'import localstack.runtime.main' \
    || die "localstack-venv: 'import localstack.runtime.main' failed"
}

py_ok_311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

install_moto() {
  [[ -f "$moto_constraints" ]] || die "missing $moto_constraints"
  local py
  if [[ -n "${DIALS_EMU_PYTHON:-}" ]]; then
    py_ok_311 "$DIALS_EMU_PYTHON" || die "DIALS_EMU_PYTHON=$DIALS_EMU_PYTHON is not a working Python >= 3.11"
    py="$DIALS_EMU_PYTHON"
  elif py_ok_311 python3; then
    py=python3
  else
    log "python3 is missing or older than 3.11 (moto 5.2.5 and its pins need >= 3.11); using the LocalStack interpreter"
    py="$(find_python313)"
  fi
  local want; want="$MOTO_SPEC ${MOTO_EXTRA[*]} $(cksum <"$moto_constraints" | cut -d' ' -f1)"
  install_venv moto-venv "$py" "$want" "$MOTO_SPEC" "${MOTO_EXTRA[@]}" -c "$moto_constraints"
  "$home/moto-venv/bin/python" -c 'import moto.server, boto3, flask, flask_cors' \
    || die "moto-venv: import of moto.server/boto3/flask/flask_cors failed"
}

case "${1:-all}" in
  all) install_localstack; install_moto ;;
  localstack) install_localstack ;;
  moto) install_moto ;;
  *) die "usage: install.sh [all|localstack|moto]" ;;
esac
