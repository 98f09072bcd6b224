#!/usr/bin/env bash
# Start a one-node Ceph S3 server on loopback, for development and CI: one mon, one osd
# (memstore by default, or bluestore on a sparse file) and one radosgw per PORT. No systemd,
# cephx with one keyring in DIR, every daemon bound to 127.0.0.1, pid files in DIR/run.
#
#   deploy/ceph/start-rgw.sh DIR [PORT...]      (default port 7480)
#
# DIR absent: a new cluster is made there. DIR present: daemons that are not running are
# started again on the existing data, those running are left alone. So, to stop and start one
# S3 endpoint alone (fault tests: "one offer stopped"):
#
#   deploy/ceph/stop-rgw.sh DIR --rgw 7481 ; deploy/ceph/start-rgw.sh DIR 7480 7481
#
# Each PORT is its own radosgw daemon over the same cluster and the same users: two ports and
# one bucket each make two storage offers that can fail independently.
#
# Prints one endpoint per line on stdout (http://127.0.0.1:PORT) once each answers S3;
# progress and errors go to stderr, daemon logs to DIR/log.
#
# Settings (environment):
#   CEPH_OBJECTSTORE  memstore (default: fastest, RAM only, 2 GiB cap) or bluestore
#   CEPH_MEMSTORE_BYTES  memstore's cap in bytes (2147483648); read when a cluster is made
#   CEPH_MON_PORT     6789
#   RGW_ACCESS_KEY    ARCHIVETESTACCESSKEY   } the S3 user "archive-test", made once
#   RGW_SECRET_KEY    archive-test-secret    } (the defaults the integration tests use)
#
# memstore keeps no data once its OSD stops: a later start on DIR makes a new cluster there.
# bluestore keeps it (restart on existing data: ~7 s). Restarting gateways alone works with both.
# Needs: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw
set -euo pipefail

usage() { echo "usage: $0 DIR [PORT...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
D=$1; shift
PORTS=("$@"); [ ${#PORTS[@]} -gt 0 ] || PORTS=(7480)
STORE=${CEPH_OBJECTSTORE:-memstore}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-2147483648}
MON_PORT=${CEPH_MON_PORT:-6789}
ACCESS_KEY=${RGW_ACCESS_KEY:-ARCHIVETESTACCESSKEY}
SECRET_KEY=${RGW_SECRET_KEY:-archive-test-secret}
S3_USER=archive-test

for port in "${PORTS[@]}"; do
  [[ $port =~ ^[0-9]+$ ]] || usage
done
case $STORE in memstore|bluestore) ;; *) echo "CEPH_OBJECTSTORE: memstore or bluestore" >&2; exit 2;; esac
[[ $MEMSTORE_BYTES =~ ^[0-9]+$ ]] || { echo "CEPH_MEMSTORE_BYTES: a number of bytes" >&2; exit 2; }
for tool in ceph ceph-authtool monmaptool ceph-mon ceph-osd radosgw radosgw-admin curl; do
  command -v "$tool" >/dev/null || {
    echo "$tool not found: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw curl" >&2
    exit 2
  }
done

log() { echo "ceph: $*" >&2; }
START_MS=$(($(date +%s%N) / 1000000))
elapsed() {
  local ms=$(($(date +%s%N) / 1000000 - START_MS))
  printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

mkdir -p "$D"
D=$(cd "$D" && pwd)
C=(-c "$D/ceph.conf")
OUT="$D/log/commands.log"   # what the ceph CLI says, kept out of the caller's output

fail() {
  echo "ceph: $*" >&2
  for f in "$D"/log/*.log; do
    [ -f "$f" ] || continue
    echo "--- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  exit 1
}

# A daemon is running if its pid file names a live process of that program (pids get reused).
running() {  # running NAME PROGRAM
  local pidfile="$D/run/$1.pid" pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

# memstore holds everything in the OSD's memory: once that OSD has stopped, the cluster's
# maps still name pools whose placement groups are gone and S3 never answers. Start afresh.
if [ -f "$D/ceph.conf" ] && grep -q '^osd objectstore = memstore' "$D/ceph.conf" \
  && ! running osd.0 ceph-osd; then
  log "memstore lost its data when its OSD stopped: making a new cluster in $D"
  "$(dirname "$0")/stop-rgw.sh" "$D"
  rm -rf "$D"/{mon,osd0,run,log,rgw} "$D"/{ceph.conf,keyring,monmap}
fi

# --- a new cluster ---------------------------------------------------------------------------
if [ ! -f "$D/ceph.conf" ]; then
  log "new cluster in $D ($STORE)"
  mkdir -p "$D"/{mon,osd0,run,log,rgw}
  FSID=$(cat /proc/sys/kernel/random/uuid)
  cat >"$D/ceph.conf.new" <<EOF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
crash dir = $D/log/crash
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd memory target = 939524096
# Faster map updates: the first radosgw start creates its pools one osdmap epoch at a time.
paxos propose interval = 0.05
paxos min wait = 0.01

[mon.a]
mon data = $D/mon

[osd.0]
osd data = $D/osd0
osd objectstore = $STORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block size = 10737418240
bluestore block create = true
bluestore cache autotune = false
bluestore cache size = 268435456
EOF
  ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >>"$OUT"
  ceph-authtool "$D/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >>"$OUT"
  ceph-authtool "$D/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >>"$OUT"
  chmod 600 "$D/keyring"
  monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$D/monmap" >>"$OUT"
  ceph-mon -c "$D/ceph.conf.new" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" \
    >>"$OUT" 2>&1 || fail "ceph-mon --mkfs failed"
  mv "$D/ceph.conf.new" "$D/ceph.conf"   # its presence means "a cluster lives here"
fi
mkdir -p "$D"/{run,log,rgw}

# --- mon -------------------------------------------------------------------------------------
if ! running mon.a ceph-mon; then
  log "starting mon"
  ceph-mon "${C[@]}" -i a </dev/null >>"$OUT" 2>&1 || fail "ceph-mon did not start"
fi
wait_for 60 "the mon" ceph "${C[@]}" --connect-timeout 5 mon stat

# --- osd -------------------------------------------------------------------------------------
if [ ! -f "$D/osd0/.made" ]; then
  log "making osd.0"
  OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
  ceph "${C[@]}" osd new "$OSD_UUID" 0 >>"$OUT" 2>&1 || fail "ceph osd new failed"
  ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" </dev/null >>"$OUT" 2>&1 \
    || fail "ceph-osd --mkfs failed"
  touch "$D/osd0/.made"
fi
if ! running osd.0 ceph-osd; then
  log "starting osd"
  ceph-osd "${C[@]}" -i 0 </dev/null >>"$OUT" 2>&1 || fail "ceph-osd did not start"
fi
osd_up() { ceph "${C[@]}" --connect-timeout 5 osd stat 2>/dev/null | grep -q '1 up'; }
wait_for 120 "the osd" osd_up

# --- one radosgw per port --------------------------------------------------------------------
for port in "${PORTS[@]}"; do
  name=client.rgw.p$port
  if ! grep -q "^\[$name\]" "$D/ceph.conf"; then
    # tcp_nodelay: without it each response whose body follows its headers in a second
    # write waits for the client's delayed ACK (~40 ms per GET on loopback).
    printf '\n[%s]\nrgw frontends = beast endpoint=127.0.0.1:%s tcp_nodelay=1\nrgw data = %s\n' \
      "$name" "$port" "$D/rgw/p$port" >>"$D/ceph.conf"
  fi
  if ! grep -q "^\[$name\]" "$D/keyring"; then
    ceph "${C[@]}" auth get-or-create "$name" mon 'allow rw' osd 'allow rwx' \
      >>"$D/keyring" 2>>"$OUT" || fail "cannot make the cephx key of $name"
  fi
  mkdir -p "$D/rgw/p$port"
  if ! running "$name" radosgw; then
    log "starting radosgw on 127.0.0.1:$port"
    radosgw "${C[@]}" -n "$name" </dev/null >>"$OUT" 2>&1 || fail "radosgw did not start"
  fi
done
for port in "${PORTS[@]}"; do
  # Any HTTP answer means the frontend is up; the first start also creates the pools.
  wait_for 180 "S3 on port $port" curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"
done

# --- the S3 user ------------------------------------------------------------------------------
if ! radosgw-admin "${C[@]}" user info --uid="$S3_USER" >/dev/null 2>&1; then
  radosgw-admin "${C[@]}" user create --uid="$S3_USER" --display-name="archive-service tests" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$OUT" 2>&1 \
    || fail "cannot create the S3 user"
fi
# Every integration test of the production stack makes two buckets of its own (locked objects
# keep them forever): the default limit of 1,000 buckets per user is reached within one run.
radosgw-admin "${C[@]}" user modify --uid="$S3_USER" --max-buckets=1000000 >>"$OUT" 2>&1 \
  || fail "cannot raise the S3 user's bucket limit"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
# S3 answers signed requests once the user is visible to every gateway (it caches users).
for port in "${PORTS[@]}"; do
  signed_ok() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
      -H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$1/")" = 200 ]
  }
  wait_for 60 "signed S3 requests on port $port" signed_ok "$port"
done

log "up in $(elapsed): access key $ACCESS_KEY, pids $(cat "$D"/run/*.pid | tr '\n' ' ')"
for port in "${PORTS[@]}"; do
  echo "http://127.0.0.1:$port"
done
