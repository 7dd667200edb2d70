#!/usr/bin/env bash
# Extra Docker engines ("nodes") on this machine, each in its own network namespace and
# reachable over TCP+TLS, for multi-engine tests. Run as root, after scripts/engine.sh.
#
#   node.sh start NAME INDEX [--label k=v]...   start (or keep) node NAME at 10.231.INDEX.2
#   node.sh stop NAME          SIGTERM dockerd and wait (an engine shutdown)
#   node.sh kill NAME          kill -9 dockerd, containerd, shims and containers (a crash)
#   node.sh restart NAME       start again with the same flags (after stop or kill)
#   node.sh destroy NAME       stop and remove everything the node had
#   node.sh partition NAME     cut the node off the network (link down)
#   node.sh heal NAME          undo partition
#   node.sh env NAME           print DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH lines
#   node.sh exec NAME CMD...   run CMD in the node's network namespace (as a process on that
#                              host: a partition cuts it off with the node); it replaces
#                              this script, so its pid is this script's
#   node.sh status NAME        print running, stopped or absent
#   node.sh certs-other DIR    write another CA's ca.pem, cert.pem, key.pem to DIR (must be refused)
#
# Node NAME (letters, digits, - and _; up to 20 characters) gets netns drover-NAME, host-side
# link drv-INDEX (10.231.INDEX.1), engine addresses 10.231.INDEX.2 (in its certificate) and
# 10.231.INDEX.3 (not in it: dial it to test a name mismatch), a route to the other nodes
# (10.231.0.0/16) through this host, socket /run/drover-NAME.sock,
# and /tmp/drover-nodes/NAME with ca.pem, cert.pem, key.pem for DOCKER_CERT_PATH. All nodes
# share the CA in /tmp/drover-nodes/ca. Every subcommand is safe to re-run.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES_DIR=${DROVER_NODES_DIR:-/tmp/drover-nodes}
DATA_DIR=${DROVER_NODES_DATA:-/var/lib/drover-nodes}
IMAGE=drover-test/busybox:latest
LOCAL_HOST=unix://${DROVER_TEST_SOCKET:-/var/run/docker.sock}
PORT=2376

say() { echo "node.sh: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, dockerd)"

# --- per-node names --------------------------------------------------------------------
node_vars() {
  NAME=$1
  [[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$ ]] || die "bad node name '$NAME' (letters, digits, - and _; up to 20)"
  NETNS=drover-$NAME
  DIR=$NODES_DIR/$NAME
  DATA=$DATA_DIR/$NAME
  EXEC=/run/drover-$NAME
  PIDFILE=/run/drover-$NAME.pid
  SOCK=/run/drover-$NAME.sock
  LOG=$DIR/dockerd.log
  INDEX=
  [ -f "$DIR/index" ] && INDEX=$(cat "$DIR/index")
  return 0
}

index_vars() {
  INDEX=$1
  [[ $INDEX =~ ^[0-9]+$ ]] && [ "$INDEX" -ge 1 ] && [ "$INDEX" -le 254 ] || die "bad index '$INDEX' (1..254)"
  VETH=drv-$INDEX
  HOST_IP=10.231.$INDEX.1
  NODE_IP=10.231.$INDEX.2
  ALIAS_IP=10.231.$INDEX.3
}

need_node() {
  node_vars "$1"
  [ -n "$INDEX" ] || die "no node '$NAME' (start it first: node.sh start $NAME INDEX)"
  index_vars "$INDEX"
}

dockerd_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # A pid file can outlive its process and the pid be reused: check it is this node's dockerd.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--pidfile $PIDFILE " || return 1
  echo "$pid"
}

answers() { docker -H "unix://$SOCK" version >/dev/null 2>&1; }

# --- certificates ----------------------------------------------------------------------
with_lock() { # run "$@" holding the nodes directory lock (parallel starts share the CA)
  mkdir -p "$NODES_DIR"
  (
    flock -w 120 9 || die "timed out waiting for $NODES_DIR/.lock"
    "$@"
  ) 9>"$NODES_DIR/.lock"
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

make_ca() { # DIR: ca.pem + ca-key.pem
  local dir=$1 cn=$2
  [ -s "$dir/ca.pem" ] && [ -s "$dir/ca-key.pem" ] && return 0
  mkdir -p "$dir"
  new_key "$dir/ca-key.pem"
  openssl req -x509 -new -key "$dir/ca-key.pem" -days 3650 -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem.tmp" 2>/dev/null
  mv "$dir/ca.pem.tmp" "$dir/ca.pem"
}

sign() { # CA_DIR KEY OUT CN EXTENSIONS...
  local ca=$1 key=$2 out=$3 cn=$4 ext
  shift 4
  ext=$(mktemp)
  printf '%s\n' "$@" >"$ext"
  openssl req -new -key "$key" -subj "/CN=$cn" 2>/dev/null |
    openssl x509 -req -CA "$ca/ca.pem" -CAkey "$ca/ca-key.pem" -CAcreateserial -days 3650 \
      -extfile "$ext" -out "$out" 2>/dev/null
  rm -f "$ext"
}

client_cert() { # CA_DIR OUT_DIR: ca.pem, cert.pem, key.pem for DOCKER_CERT_PATH
  local ca=$1 out=$2
  mkdir -p "$out"
  cp "$ca/ca.pem" "$out/ca.pem"
  new_key "$out/key.pem"
  sign "$ca" "$out/key.pem" "$out/cert.pem" "drover test client" \
    "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
}

node_certs() {
  with_lock make_ca "$NODES_DIR/ca" "drover test CA"
  mkdir -p "$DIR"
  # Reissue when the shared CA changed (e.g. someone removed it) or a file is missing.
  if cmp -s "$NODES_DIR/ca/ca.pem" "$DIR/ca.pem" && [ -s "$DIR/cert.pem" ] && [ -s "$DIR/key.pem" ] &&
    [ -s "$DIR/server-cert.pem" ] && [ -s "$DIR/server-key.pem" ] && [ "$(cat "$DIR/server-ip" 2>/dev/null)" = "$NODE_IP" ]; then
    return 0
  fi
  with_lock client_cert "$NODES_DIR/ca" "$DIR"
  new_key "$DIR/server-key.pem"
  with_lock sign "$NODES_DIR/ca" "$DIR/server-key.pem" "$DIR/server-cert.pem" "$NETNS" \
    "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:$NODE_IP,DNS:$NETNS"
  echo "$NODE_IP" >"$DIR/server-ip"
}

# --- network ---------------------------------------------------------------------------
netns_up() {
  local other
  if ! [ -e "/var/run/netns/$NETNS" ]; then
    other=$(ip -br addr show to "$HOST_IP/32" 2>/dev/null | awk '{print $1}' | cut -d@ -f1)
    [ -z "$other" ] || [ "$other" = "$VETH" ] || die "index $INDEX is taken: $HOST_IP is on $other"
    ip link del "$VETH" 2>/dev/null || true
    ip netns add "$NETNS"
  fi
  if ! ip link show "$VETH" >/dev/null 2>&1; then
    ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
  fi
  ip addr replace "$HOST_IP/24" dev "$VETH"
  ip link set "$VETH" up
  # While the link is down its route is gone; without this fallback, packets for the node
  # would follow the default route off the machine instead of failing here.
  ip route replace unreachable "10.231.$INDEX.0/24" metric 4000
  nsenter --net="/var/run/netns/$NETNS" sh -c "
    ip addr replace $NODE_IP/24 dev eth0 && ip addr replace $ALIAS_IP/24 dev eth0 &&
    ip link set eth0 up && ip link set lo up &&
    ip route replace 10.231.0.0/16 via $HOST_IP dev eth0"
  # Nodes reach each other's addresses through this host, as hosts on one network would
  # (services across nodes, through ambassadors). The engine here drops forwarded traffic
  # by default; DOCKER-USER is the chain it leaves to its users.
  local chain=DOCKER-USER
  iptables -n -L "$chain" >/dev/null 2>&1 || chain=FORWARD
  iptables -C "$chain" -i 'drv-+' -o 'drv-+' -j ACCEPT 2>/dev/null ||
    iptables -I "$chain" -i 'drv-+' -o 'drv-+' -j ACCEPT
}

# --- dockerd ---------------------------------------------------------------------------
start_dockerd() {
  local dockerd=/usr/sbin/dockerd label args=()
  [ -x "$dockerd" ] || dockerd=$(command -v dockerd) || die "dockerd not installed (run scripts/engine.sh)"
  while IFS= read -r label; do
    [ -n "$label" ] && args+=(--label "$label")
  done <"$DIR/labels"
  # Stale pid files from a crash make dockerd refuse to start or wait on a reused pid.
  rm -f "$PIDFILE" "$EXEC/containerd/containerd.pid" "$SOCK"
  mkdir -p "$DATA" "$EXEC"
  echo "--- start $(date -u +%FT%TZ)" >>"$LOG"
  setsid nohup nsenter --net="/var/run/netns/$NETNS" "$dockerd" \
    --data-root "$DATA" --exec-root "$EXEC" --pidfile "$PIDFILE" \
    -H "unix://$SOCK" -H "tcp://$NODE_IP:$PORT" -H "tcp://$ALIAS_IP:$PORT" \
    --tlsverify --tlscacert "$DIR/ca.pem" --tlscert "$DIR/server-cert.pem" --tlskey "$DIR/server-key.pem" \
    "${args[@]}" >>"$LOG" 2>&1 </dev/null &
  local i
  for i in $(seq 1 300); do
    answers && return 0
    if [ "$i" -gt 10 ] && [ -z "$(procs_with "--pidfile $PIDFILE ")" ]; then break; fi
    sleep 0.2
  done
  say "dockerd for node $NAME did not answer on $SOCK; last lines of $LOG:"
  tail -n 20 "$LOG" >&2
  exit 1
}

image_tar() { # the local engine's test image, saved once per image id
  local id
  id=$(docker -H "$LOCAL_HOST" image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null) || {
    "$SCRIPT_DIR/engine.sh"
    id=$(docker -H "$LOCAL_HOST" image inspect -f '{{.Id}}' "$IMAGE")
  }
  if [ "$(cat "$NODES_DIR/image.id" 2>/dev/null)" != "$id" ] || ! [ -s "$NODES_DIR/image.tar" ]; then
    docker -H "$LOCAL_HOST" save "$IMAGE" -o "$NODES_DIR/image.tar.tmp"
    mv "$NODES_DIR/image.tar.tmp" "$NODES_DIR/image.tar"
    echo "$id" >"$NODES_DIR/image.id"
  fi
}

load_image() {
  docker -H "unix://$SOCK" image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  with_lock image_tar
  docker -H "unix://$SOCK" load -q -i "$NODES_DIR/image.tar" >/dev/null
}

check_tls() {
  DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$DIR docker -H "tcp://$NODE_IP:$PORT" version >/dev/null 2>&1 ||
    die "node $NAME answers on $SOCK but not on tcp://$NODE_IP:$PORT with TLS; see $LOG"
}

wait_gone() { # PID SECONDS: true once PID has exited (a zombie counts as exited)
  local i stat
  for i in $(seq 1 $(($2 * 20))); do
    # `$(<file)` on a file that vanished ends the script under `set -e`, `||` or not.
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 0
    sleep 0.05
  done
  return 1
}

# Processes of this node other than dockerd: its containerd and the shims (both name the
# node's exec-root on their command line).
node_procs() { procs_with "$EXEC/"; }

# pgrep -f and pgrep -P without procps (not in minimal Debian images).
procs_with() { # pids whose command line contains $1
  local p args cmd
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" != "$$" ] || continue
    args=()
    mapfile -d '' args <"$p/cmdline" 2>/dev/null || continue
    cmd="${args[*]-} "
    [[ $cmd == *"$1"* ]] && echo "${p#/proc/}"
  done
  return 0
}
children_of() { # pids whose parent is $1
  local p stat
  for p in /proc/[0-9]*; do
    { read -r stat <"$p/stat"; } 2>/dev/null || continue
    stat=${stat##*) }
    stat=${stat#* }
    [ "${stat%% *}" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}

# --- subcommands -----------------------------------------------------------------------
cmd_start() {
  [ $# -ge 2 ] || usage
  node_vars "$1"
  local want=$2 labels=() prev
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      --label) [ $# -ge 2 ] || die "--label needs k=v"; labels+=("$2"); shift 2 ;;
      --label=*) labels+=("${1#--label=}"); shift ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  index_vars "$want"
  prev=$INDEX
  [ -z "$prev" ] || [ "$prev" = "$want" ] || die "node $NAME exists with index $prev; destroy it first"
  mkdir -p "$DIR"
  echo "$INDEX" >"$DIR/index"
  printf '%s\n' "${labels[@]+"${labels[@]}"}" >"$DIR/labels.new"
  if dockerd_pid >/dev/null && answers && cmp -s "$DIR/labels" "$DIR/labels.new"; then
    rm -f "$DIR/labels.new"
    netns_up
    load_image
    say "node $NAME already running at tcp://$NODE_IP:$PORT"
    return 0
  fi
  mv "$DIR/labels.new" "$DIR/labels"
  dockerd_pid >/dev/null && stop_dockerd
  netns_up
  node_certs
  start_dockerd
  load_image
  check_tls
  say "node $NAME ready at tcp://$NODE_IP:$PORT (socket $SOCK)"
}

stop_dockerd() {
  local pid
  pid=$(dockerd_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 60; then
    say "dockerd of node $NAME did not stop within 60 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "cannot kill dockerd $pid"
  fi
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  stop_dockerd
  say "node $NAME stopped"
}

cmd_kill() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  local pid
  pid=$(dockerd_pid) || { say "node $NAME is not running"; return 0; }
  kill_all "$pid"
  say "node $NAME killed"
}

# kill -9 a node's dockerd (if given), containerd, shims and containers at once: the whole
# node crashes like a host losing power. (Killing only dockerd and containerd would leave the
# containers running; the next start would then stop each one with a 10 s timeout.)
kill_all() {
  local procs p
  procs="$* $(node_procs)"
  for p in $(node_procs); do procs="$procs $(children_of "$p")"; done
  # shellcheck disable=SC2086
  kill -KILL $procs 2>/dev/null || true
  for p in $procs; do wait_gone "$p" 10 || say "process $p survived kill -9"; done
}

cmd_restart() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  stop_dockerd
  netns_up
  node_certs
  start_dockerd
  check_tls
  say "node $NAME restarted"
}

cmd_destroy() {
  [ $# -eq 1 ] || usage
  node_vars "$1"
  local pid=
  if [ -n "$INDEX" ]; then index_vars "$INDEX"; fi
  # Everything is thrown away, so no clean shutdown (it would wait for each container).
  pid=$(dockerd_pid) || pid=
  kill_all $pid
  awk -v a="$DATA" -v b="$EXEC" '$2 == a || $2 == b || index($2, a "/") == 1 || index($2, b "/") == 1 { print $2 }' /proc/mounts |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ -e "/var/run/netns/$NETNS" ]; then ip netns del "$NETNS" 2>/dev/null || true; fi
  if [ -n "$INDEX" ]; then
    ip link del "$VETH" 2>/dev/null || true
    ip route del unreachable "10.231.$INDEX.0/24" metric 4000 2>/dev/null || true
  fi
  rm -rf "$DATA" "$EXEC" "$DIR"
  rm -f "$PIDFILE" "$SOCK"
  say "node $NAME destroyed"
}

cmd_partition() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  ip link set "$VETH" down
  say "node $NAME partitioned ($VETH down)"
}

cmd_heal() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  ip link set "$VETH" up
  say "node $NAME healed ($VETH up)"
}

cmd_env() {
  [ $# -eq 1 ] || usage
  need_node "$1"
  echo "DOCKER_HOST=tcp://$NODE_IP:$PORT"
  echo "DOCKER_TLS_VERIFY=1"
  echo "DOCKER_CERT_PATH=$DIR"
}

cmd_exec() {
  [ $# -ge 2 ] || usage
  need_node "$1"
  shift
  exec nsenter --net="/var/run/netns/$NETNS" "$@"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  node_vars "$1"
  if [ -z "$INDEX" ]; then echo absent; elif dockerd_pid >/dev/null; then echo running; else echo stopped; fi
}

cmd_certs_other() {
  [ $# -eq 1 ] || usage
  local out=$1
  mkdir -p "$out"
  make_ca "$out/other-ca" "drover other CA"
  client_cert "$out/other-ca" "$out"
  say "wrote another CA's ca.pem, cert.pem, key.pem to $out"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill) cmd_kill "$@" ;;
  restart) cmd_restart "$@" ;;
  destroy) cmd_destroy "$@" ;;
  partition) cmd_partition "$@" ;;
  heal) cmd_heal "$@" ;;
  env) cmd_env "$@" ;;
  status) cmd_status "$@" ;;
  exec) cmd_exec "$@" ;;
  certs-other) cmd_certs_other "$@" ;;
  -h | --help | help) usage ;;
  *) say "unknown subcommand '$cmd'"; usage ;;
esac
