#!/usr/bin/env bash
# Starts LocalStack (S3 + SQS only) in the background on 127.0.0.1:${LOCALSTACK_PORT:-4566}, without Docker:
# localstack-core's runtime run directly from the venv made by install.sh. Waits until it is ready
# (/_localstack/health answers and the log says "Ready."), at most ${DIALS_EMU_READY_TIMEOUT:-90} s.
#
#   bash localstack/start-localstack.sh && AWS_ENDPOINT_URL=http://127.0.0.1:4566 ...
#
# Files: $DIALS_EMU_HOME/run/localstack-<port>.pid, .log, and localstack-<port>/ (TMPDIR and
# FILESYSTEM_ROOT, wiped at each start: no persistence). Already running on that port → prints so, exit 0.
# Other LocalStack settings in the caller's environment (LS_LOG=debug, GATEWAY_SERVER=hypercorn) pass through.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port="${LOCALSTACK_PORT:-4566}"
venv="$EMU_HOME/localstack-venv"
pidfile="$EMU_RUN/localstack-$port.pid"
logfile="$EMU_RUN/localstack-$port.log"
state="$EMU_RUN/localstack-$port"
pattern="localstack.runtime.main"
health="http://127.0.0.1:$port/_localstack/health"
gateway_server="${GATEWAY_SERVER:-hypercorn}"
case "$gateway_server" in
  twisted) bound="0.0.0.0:$port (twisted ignores the host; GATEWAY_SERVER=hypercorn for 127.0.0.1 only)" ;;
  *) bound="127.0.0.1:$port" ;;
esac

[[ -x "$venv/bin/python" && -f "$venv/.dials-installed" ]] \
  || emu_die "LocalStack is not installed in $venv: run 'bash $EMU_HERE/install.sh localstack' first"

mkdir -p "$EMU_RUN"
if emu_alive "$(cat "$pidfile" 2>/dev/null || true)" "$pattern"; then
  if curl -fsS --max-time 2 "$health" >/dev/null 2>&1; then
    emu_log "LocalStack already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  emu_die "LocalStack pid $(cat "$pidfile") exists but $health does not answer; run stop.sh first"
fi
emu_port_busy "$port" && emu_die "port 127.0.0.1:$port is already in use by another process (set LOCALSTACK_PORT)"

rm -rf "$state"
mkdir -p "$state/tmp" "$state/fs"

cd "$state"   # -P and a neutral cwd: nothing from the caller's directory lands on sys.path
t0="$(emu_now)"
# SERVICES/EAGER_SERVICE_LOADING: only S3 + SQS, loaded before "Ready." (no first-request delay).
# LOCALSTACK_HOST + SQS_ENDPOINT_STRATEGY=path: queue URLs http://127.0.0.1:<port>/queue/<region>/<acct>/<name>
#   (otherwise *.localhost.localstack.cloud, which needs public DNS).
# DISABLE_EVENTS: no analytics phone-home. SKIP_SSL_CERT_DOWNLOAD: no certificate download at start.
# DNS_ADDRESS=0: no DNS server (it would bind UDP 0.0.0.0:53 as root, or try sudo otherwise).
# GATEWAY_SERVER: LocalStack's default HTTP server, twisted, ignores the host part of GATEWAY_LISTEN and
#   listens on 0.0.0.0:<port>; GATEWAY_SERVER=hypercorn listens on 127.0.0.1 only (same S3/SQS results here).
emu_spawn "$pidfile" "$logfile" env \
  GATEWAY_SERVER="$gateway_server" \
  SERVICES=s3,sqs \
  EAGER_SERVICE_LOADING=1 \
  GATEWAY_LISTEN="127.0.0.1:$port" \
  LOCALSTACK_HOST="127.0.0.1:$port" \
  SQS_ENDPOINT_STRATEGY=path \
  DISABLE_EVENTS=1 \
  SKIP_SSL_CERT_DOWNLOAD=1 \
  DNS_ADDRESS=0 \
  PERSISTENCE=0 \
  TMPDIR="$state/tmp" \
  FILESYSTEM_ROOT="$state/fs" \
  "$venv/bin/python" -P -m localstack.runtime.main
pid="$(cat "$pidfile")"

while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidfile"
    emu_fail_with_log "$logfile" "LocalStack exited during startup"
  fi
  if grep -q '^Ready\.' "$logfile" 2>/dev/null && curl -fsS --max-time 2 "$health" >/dev/null 2>&1; then
    break
  fi
  if awk -v a="$t0" -v b="$(emu_now)" -v t="$READY_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
    emu_stop "LocalStack :$port" "$pidfile" "$pattern" >/dev/null 2>&1
    emu_fail_with_log "$logfile" "LocalStack not ready after $READY_TIMEOUT s (pid $pid stopped)"
  fi
  sleep 0.1
done
emu_log "LocalStack ready on http://127.0.0.1:$port after $(emu_elapsed "$t0") s (pid $pid, RSS $(emu_rss_mb "$pid") MB, $gateway_server listening on $bound, log $logfile)"
