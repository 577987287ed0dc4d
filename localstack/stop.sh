#!/usr/bin/env bash
# Stops the emulators started by start-localstack.sh / start-moto.sh, by their pid files
# ($DIALS_EMU_HOME/run/<name>-<port>.pid): SIGTERM, up to 15 s grace, then SIGKILL.
#
#   bash localstack/stop.sh              # every LocalStack and moto started from this $DIALS_EMU_HOME
#   bash localstack/stop.sh localstack   # only LocalStack (all ports)   | moto
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

which="${1:-all}"
case "$which" in all | localstack | moto) ;; *) emu_die "usage: stop.sh [all|localstack|moto]" ;; esac

shopt -s nullglob
found=0
if [[ "$which" == all || "$which" == localstack ]]; then
  for f in "$EMU_RUN"/localstack-*.pid; do
    found=1; emu_stop "LocalStack :$(basename "$f" .pid | sed 's/^localstack-//')" "$f" "localstack.runtime.main"
  done
fi
if [[ "$which" == all || "$which" == moto ]]; then
  for f in "$EMU_RUN"/moto-*.pid; do
    found=1; emu_stop "moto :$(basename "$f" .pid | sed 's/^moto-//')" "$f" "moto_server"
  done
fi
[[ "$found" == 1 ]] || emu_log "nothing to stop (no pid files in $EMU_RUN)"
