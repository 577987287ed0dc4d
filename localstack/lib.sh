# Shared helpers for start-localstack.sh, start-moto.sh and stop.sh (sourced, not run).
# Run state lives in $DIALS_EMU_HOME/run: <name>-<port>.pid, <name>-<port>.log, <name>-<port>/ (scratch).
# shellcheck shell=bash

export LC_ALL=C
EMU_HOME="${DIALS_EMU_HOME:-$HOME/.cache/dials-emulators}"
EMU_HOME="$(mkdir -p "$EMU_HOME" && cd "$EMU_HOME" && pwd)"   # absolute: the start scripts cd elsewhere
EMU_RUN="$EMU_HOME/run"
EMU_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${DIALS_EMU_READY_TIMEOUT:-90}"

emu_die() { echo "${0##*/}: error: $*" >&2; exit 1; }
emu_log() { echo "${0##*/}: $*" >&2; }

emu_now() { if [[ -n "${EPOCHREALTIME:-}" ]]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi; }
emu_elapsed() { awk -v a="$1" -v b="$(emu_now)" 'BEGIN { printf "%.1f", b - a }'; }

# emu_alive PID PATTERN: the process exists and its command line contains PATTERN (guards against a
# recycled PID belonging to something else).
emu_alive() {
  local pid="$1" pattern="$2" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(ps -p "$pid" -o command= 2>/dev/null)" || return 1
  [[ "$cmd" == *"$pattern"* ]]
}

emu_rss_mb() { ps -p "$1" -o rss= 2>/dev/null | awk '{ printf "%d", $1 / 1024 }'; }

# emu_port_busy PORT: something accepts TCP connections on 127.0.0.1:PORT.
emu_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# emu_spawn PIDFILE LOGFILE CMD...: starts CMD in the background in its own session (when setsid exists),
# immune to SIGHUP, stdin from /dev/null; the PID of CMD itself (not of a wrapper) goes to PIDFILE.
emu_spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  local -a sess=()
  command -v setsid >/dev/null 2>&1 && sess=(setsid)
  rm -f "$pidfile"
  nohup ${sess[@]+"${sess[@]}"} bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$logfile" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do [[ -s "$pidfile" ]] && return 0; sleep 0.1; done
  emu_die "process did not start (no $pidfile)"
}

# emu_fail_with_log LOGFILE MESSAGE
emu_fail_with_log() {
  echo "${0##*/}: error: $2" >&2
  echo "---- last 40 lines of $1 ----" >&2
  tail -n 40 "$1" >&2 || true
  echo "----" >&2
  exit 1
}

# emu_stop NAME PIDFILE PATTERN: SIGTERM, up to 15 s grace, then SIGKILL; removes the pid file.
emu_stop() {
  local name="$1" pidfile="$2" pattern="$3" pid i
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if ! emu_alive "$pid" "$pattern"; then
    emu_log "$name: not running (stale $pidfile removed)"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do
    emu_alive "$pid" "$pattern" || break
    sleep 0.1
  done
  if emu_alive "$pid" "$pattern"; then
    emu_log "$name: pid $pid still alive after 15 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  emu_log "$name: stopped (pid $pid)"
}
