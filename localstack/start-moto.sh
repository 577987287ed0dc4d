#!/usr/bin/env bash
# Starts moto server (all services, in RAM) in the background on 127.0.0.1:${MOTO_PORT:-5000}, from the
# venv made by install.sh. Waits until /moto-api/ answers, at most ${DIALS_EMU_READY_TIMEOUT:-90} s.
#
#   bash localstack/start-moto.sh && AWS_ENDPOINT_URL=http://127.0.0.1:5000 ...
#
# Files: $DIALS_EMU_HOME/run/moto-<port>.pid and .log. Already running on that port → prints so, exit 0.
# Wipe all state between tests without a restart: curl -X POST http://127.0.0.1:5000/moto-api/reset
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port="${MOTO_PORT:-5000}"
venv="$EMU_HOME/moto-venv"
pidfile="$EMU_RUN/moto-$port.pid"
logfile="$EMU_RUN/moto-$port.log"
state="$EMU_RUN/moto-$port"
pattern="moto_server"
probe="http://127.0.0.1:$port/moto-api/"

[[ -x "$venv/bin/moto_server" && -f "$venv/.dials-installed" ]] \
  || emu_die "moto is not installed in $venv: run 'bash $EMU_HERE/install.sh moto' first"

mkdir -p "$EMU_RUN"
if emu_alive "$(cat "$pidfile" 2>/dev/null || true)" "$pattern"; then
  if curl -fsS --max-time 2 "$probe" >/dev/null 2>&1; then
    emu_log "moto already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  emu_die "moto pid $(cat "$pidfile") exists but $probe does not answer; run stop.sh first"
fi
emu_port_busy "$port" && emu_die "port 127.0.0.1:$port is already in use by another process (set MOTO_PORT)"

rm -rf "$state"
mkdir -p "$state"

cd "$state"
t0="$(emu_now)"
# moto keeps objects in RAM; TMPDIR only catches large spooled request bodies.
emu_spawn "$pidfile" "$logfile" env TMPDIR="$state" \
  "$venv/bin/python" "$venv/bin/moto_server" -H 127.0.0.1 -p "$port"
pid="$(cat "$pidfile")"

while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidfile"
    emu_fail_with_log "$logfile" "moto exited during startup"
  fi
  curl -fsS --max-time 2 "$probe" >/dev/null 2>&1 && break
  if awk -v a="$t0" -v b="$(emu_now)" -v t="$READY_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
    emu_stop "moto :$port" "$pidfile" "$pattern" >/dev/null 2>&1
    emu_fail_with_log "$logfile" "moto not ready after $READY_TIMEOUT s (pid $pid stopped)"
  fi
  sleep 0.1
done
emu_log "moto ready on http://127.0.0.1:$port after $(emu_elapsed "$t0") s (pid $pid, RSS $(emu_rss_mb "$pid") MB, log $logfile)"
