#!/usr/bin/env bash
# Starts corecast on chosen NUMA nodes with numactl, printing the command(s) first.
#
#   scripts/numa-launch.sh [--nodes LIST] [--per-node] [--dry-run] [--bin PATH]
#                          [--host ADDR] [--resp-port N] [--http-port N] [-- corecast options...]
#
# One corecast (the default) spans the chosen nodes: one shard per CPU of those nodes.
#
#   numactl --cpunodebind=0,1 --localalloc corecast ...
#
# --cpunodebind restricts the process's affinity mask to the nodes' CPUs (corecast runs one
# shard per CPU of the mask). --localalloc makes every page come from the node of the CPU
# that first touches it, and each shard allocates its buffers (connection slab, receive-buffer
# ring, outbound queues, history) on its own thread after pinning, so each shard's memory
# stays on its own node. `--membind=0` would instead pull every shard's memory to node 0,
# whichever node the shard runs on: the shards on the other nodes would pay a remote access
# for every byte they touch (connection slots, receive buffers, queues, frames).
#
# --per-node starts one corecast per node instead, each bound to its node (CPUs and local
# memory) and listening on its own ports: the base ports plus the node number (node 1: 6380
# and 8081). Channels do not span processes until a backplane exists: a message published to
# one node's corecast reaches only that corecast's subscribers.
#
# --nodes takes numactl's syntax (0,2 or 0-3) or `all` (the default: every node with CPUs).
# --dry-run prints the command(s) and runs nothing. Options after `--` go to every corecast.
# The output is a shell script (notes are comments), so `--dry-run > start.sh` works.
#
# Environment: CORECAST_SYSFS_ROOT (default /, as for corecast itself) is where the topology
# is read from (sys/devices/system/node/node*/cpulist, sys/devices/system/cpu/online), so
# tests can give it fake layouts. CORECAST_BIN is the binary when --bin is not given (else
# `corecast` on PATH, else target/release/corecast). NUMACTL is the numactl to run (default:
# numactl on PATH).
set -euo pipefail

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {
  echo "numa-launch.sh: $*" >&2
  exit 2
}

nodes_arg=all
per_node=0
dry_run=0
bin=${CORECAST_BIN:-}
host=0.0.0.0
resp_port=6379
http_port=8080
passthrough=()
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) [ $# -ge 2 ] || die "--nodes needs a value"; nodes_arg=$2; shift 2 ;;
    --nodes=*) nodes_arg=${1#*=}; shift ;;
    --per-node) per_node=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a value"; bin=$2; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --host) [ $# -ge 2 ] || die "--host needs a value"; host=$2; shift 2 ;;
    --host=*) host=${1#*=}; shift ;;
    --resp-port) [ $# -ge 2 ] || die "--resp-port needs a value"; resp_port=$2; shift 2 ;;
    --resp-port=*) resp_port=${1#*=}; shift ;;
    --http-port) [ $# -ge 2 ] || die "--http-port needs a value"; http_port=$2; shift 2 ;;
    --http-port=*) http_port=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; passthrough=("$@"); break ;;
    *) die "unknown option $1 (corecast's own options go after --; see --help)" ;;
  esac
done
for port in "$resp_port" "$http_port"; do
  if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -gt 65535 ]; then die "invalid port $port"; fi
done

# The topology comes from sysfs under CORECAST_SYSFS_ROOT, the same variable (and layout) as
# corecast's own topology reader: a directory holding sys/devices/system (default /). A path
# to a sysfs tree itself (holding devices/system) works too.
root=${CORECAST_SYSFS_ROOT:-/}
root=${root%/}
if [ -d "$root/sys/devices/system" ]; then
  sysfs=$root/sys
elif [ -d "$root/devices/system" ]; then
  sysfs=$root
else
  die "cannot read the topology: no $root/sys/devices/system (CORECAST_SYSFS_ROOT=${CORECAST_SYSFS_ROOT:-/})"
fi
node_dir=$sysfs/devices/system/node

# expand LIST: the CPUs of a kernel cpulist such as 0-3,8-11, one per line.
expand() {
  local part
  local IFS=,
  for part in $1; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    elif [[ $part =~ ^[0-9]+$ ]]; then
      echo "$part"
    fi
  done
}

# Online CPUs (an offline CPU runs no shard); without cpu/online, all are.
declare -A online=()
have_online=0
if [ -r "$sysfs/devices/system/cpu/online" ]; then
  have_online=1
  while read -r c; do online[$c]=1; done < <(expand "$(tr -d ' \n' <"$sysfs/devices/system/cpu/online")")
fi

# count_cpus LIST: how many CPUs of LIST are online (the shards corecast would run there).
count_cpus() {
  local n=0 c
  while read -r c; do
    if [ $have_online -eq 0 ] || [ -n "${online[$c]+set}" ]; then n=$((n + 1)); fi
  done < <(expand "$1")
  echo "$n"
}

# The host's nodes and their CPUs. A kernel without NUMA has no node directories: then the
# host is one node 0 holding every online CPU.
declare -A cpulist=()
if compgen -G "$node_dir/node[0-9]*" >/dev/null; then
  for dir in "$node_dir"/node[0-9]*; do
    n=${dir##*/node}
    [[ $n =~ ^[0-9]+$ ]] || continue
    list=""
    [ -r "$dir/cpulist" ] && list=$(tr -d ' \n' <"$dir/cpulist")
    cpulist[$n]=$list
  done
elif [ $have_online -eq 1 ]; then
  cpulist[0]=$(tr -d ' \n' <"$sysfs/devices/system/cpu/online")
else
  die "cannot read the NUMA topology: no $node_dir/node*/cpulist and no $sysfs/devices/system/cpu/online"
fi
mapfile -t host_nodes < <(printf '%s\n' "${!cpulist[@]}" | sort -n)
host_list=$(IFS=,; echo "${host_nodes[*]}")

# The chosen nodes, in order, without repeats.
chosen=()
if [ "$nodes_arg" = all ]; then
  for n in "${host_nodes[@]}"; do
    if [ "$(count_cpus "${cpulist[$n]}")" -gt 0 ]; then chosen+=("$n"); fi
  done
  [ ${#chosen[@]} -gt 0 ] || die "no NUMA node under $node_dir has online CPUs"
else
  declare -A seen=()
  IFS=, read -r -a parts <<<"$nodes_arg"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
      [ "$lo" -le "$hi" ] || die "invalid node range $part in --nodes $nodes_arg"
    elif [[ $part =~ ^[0-9]+$ ]]; then
      lo=$part hi=$part
    else
      die "invalid node list --nodes $nodes_arg (numbers and ranges: 0,2 or 0-3, or all)"
    fi
    for ((n = lo; n <= hi; n++)); do
      [ -n "${cpulist[$n]+set}" ] \
        || die "unknown NUMA node $n (this host has nodes $host_list; see $node_dir)"
      [ "$(count_cpus "${cpulist[$n]}")" -gt 0 ] \
        || die "NUMA node $n has no online CPUs (a memory-only node?); choose nodes with CPUs"
      if [ -z "${seen[$n]+set}" ]; then
        seen[$n]=1
        chosen+=("$n")
      fi
    done
  done
  [ ${#chosen[@]} -gt 0 ] || die "--nodes $nodes_arg names no node"
fi

if [ $per_node -eq 1 ]; then
  for opt in "${passthrough[@]}"; do
    case $opt in
      --resp-listen|--resp-listen=*|--http-listen|--http-listen=*|--listen|--listen=*)
        die "--per-node sets each corecast's listeners itself (base ports + node number); use --host, --resp-port and --http-port instead of $opt" ;;
    esac
  done
fi

if [ -z "$bin" ]; then
  if command -v corecast >/dev/null 2>&1; then
    bin=$(command -v corecast)
  else
    bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/corecast
  fi
fi
numactl=${NUMACTL:-numactl}
if [ $dry_run -eq 0 ]; then
  command -v "$numactl" >/dev/null 2>&1 \
    || die "numactl not found ($numactl); install it (apt-get install numactl) or use --dry-run"
  [ -x "$bin" ] || die "corecast binary $bin is not executable (build it with cargo build --release -p corecast-server, or pass --bin)"
fi

# print_cmd WORD...: the command, quoted (only where needed) so it can be pasted into a shell.
print_cmd() {
  local word out=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=("$word")
    else
      out+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

addr() {
  # An IPv6 host needs brackets in a socket address.
  if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi
}

if [ $per_node -eq 0 ]; then
  nodes=$(IFS=,; echo "${chosen[*]}")
  cpus=()
  total=0
  for n in "${chosen[@]}"; do
    cpus+=("${cpulist[$n]}")
    total=$((total + $(count_cpus "${cpulist[$n]}")))
  done
  echo "# one corecast on NUMA node(s) $nodes: CPUs $(IFS=,; echo "${cpus[*]}"), up to $total shards (one per CPU)"
  echo "# --localalloc: each shard's memory comes from its own node (first touch after pinning)"
  cmd=("$numactl" "--cpunodebind=$nodes" --localalloc "$bin" "${passthrough[@]}")
  print_cmd "${cmd[@]}"
  [ $dry_run -eq 1 ] && exit 0
  exec "${cmd[@]}"
fi

# node_cmd N: sets `cmd` to node N's corecast command line.
node_cmd() {
  local n=$1
  cmd=("$numactl" "--cpunodebind=$n" --localalloc "$bin"
       --resp-listen "$(addr "$host" $((resp_port + n)))"
       --http-listen "$(addr "$host" $((http_port + n)))"
       "${passthrough[@]}")
}

echo "# one corecast per NUMA node (${#chosen[@]}), each on its own ports: base ports + node number"
echo "# note: channels do not span processes until a backplane exists; a message published to one"
echo "# node's corecast reaches only that corecast's subscribers"
for n in "${chosen[@]}"; do
  if [ $((resp_port + n)) -gt 65535 ] || [ $((http_port + n)) -gt 65535 ]; then
    die "node $n's ports pass 65535 (lower --resp-port/--http-port)"
  fi
  echo "# node $n: CPUs ${cpulist[$n]} ($(count_cpus "${cpulist[$n]}") shards), resp $(addr "$host" $((resp_port + n))), http $(addr "$host" $((http_port + n)))"
  node_cmd "$n"
  echo "$(print_cmd "${cmd[@]}") &"
done
echo "wait"
[ $dry_run -eq 1 ] && exit 0

# Start them all; SIGINT/SIGTERM go to every corecast (each drains and exits 0), and this
# script exits with the first failure's status, if any.
pids=()
for n in "${chosen[@]}"; do
  node_cmd "$n"
  "${cmd[@]}" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  while :; do
    rc=0
    wait "$pid" || rc=$?
    # A trapped signal interrupts wait (status > 128) while the child still runs: wait again.
    if [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
done
exit "$status"
