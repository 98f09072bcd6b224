#!/usr/bin/env bash
# Stop what deploy/ceph/start-rgw.sh started in DIR, by its pid files; the data stays (except
# with memstore, which keeps none once its OSD stops).
#
#   deploy/ceph/stop-rgw.sh DIR               every daemon: the gateways and the osd, then mon
#   deploy/ceph/stop-rgw.sh DIR --rgw PORT    only the gateway on PORT (start it again with
#                                             start-rgw.sh DIR PORT...)
#
# SIGTERM first, SIGKILL to what still runs after a timeout. Each daemon takes about 2 s to
# stop, so they are stopped together; the mon last, as the OSD reports to it while stopping.
set -euo pipefail
usage() { echo "usage: $0 DIR [--rgw PORT]" >&2; exit 2; }
[ $# -eq 1 ] || [ $# -eq 3 ] || usage
D=$1
if [ $# -eq 3 ]; then
  [ "$2" = --rgw ] && [[ $3 =~ ^[0-9]+$ ]] || usage
fi
[ -d "$D/run" ] || { echo "ceph: nothing started in $D" >&2; exit 0; }

alive() {  # alive PID...: is any of them still running?
  local pid
  for pid in "$@"; do
    kill -0 "$pid" 2>/dev/null && return 0
  done
  return 1
}

# stop TIMEOUT_SECONDS NAME:PROGRAM...  (NAME's pid file; PROGRAM guards against pid reuse)
stop() {
  local timeout=$1 entry name program pidfile pid i
  local -a pids=()
  shift
  for entry in "$@"; do
    name=${entry%%:*} program=${entry#*:} pidfile="$D/run/$name.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$program"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  for ((i = 0; i < timeout * 10; i++)); do
    alive "${pids[@]}" || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "ceph: pid $pid still running after $timeout s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

if [ $# -eq 3 ]; then
  stop 15 "client.rgw.p$3:radosgw"
  exit 0
fi
daemons=()
for pidfile in "$D"/run/client.rgw.*.pid; do
  [ -e "$pidfile" ] && daemons+=("$(basename "$pidfile" .pid):radosgw")
done
stop 15 "${daemons[@]}"
stop 30 osd.0:ceph-osd mon.a:ceph-mon
