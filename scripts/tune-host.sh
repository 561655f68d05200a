#!/usr/bin/env bash
# Shows the host settings that bound how many connections corecast can hold, their current
# values and the values proposed for a target connection count; changes them only with
# --apply.
#
#   scripts/tune-host.sh [--connections N] [--apply]
#
# --connections N   the connections corecast should hold (default 100000)
# --apply           write the proposed kernel settings with `sysctl -w` (root), then say how to
#                   keep them across reboots (deploy/sysctl-corecast.conf)
#
# Kernel settings: net.core.somaxconn, net.ipv4.tcp_max_syn_backlog, net.ipv4.tcp_rmem,
# net.ipv4.tcp_wmem, net.ipv4.tcp_mem, net.ipv4.ip_local_port_range, fs.nr_open,
# fs.file-max. A proposal never lowers a value. kernel.io_uring_disabled (kernels 6.6 and
# later) is shown but never changed: corecast needs it at 0, or at 1 with its user in the
# group kernel.io_uring_group; that is a security choice for the operator. Process limits
# (open files, memlock) are not sysctls: the script shows this shell's and the systemd
# unit's, and what they should be.
#
# Environment: CORECAST_PROC_ROOT (default /proc) is where values are read from
# (sys/net/core/somaxconn, ..., meminfo), so tests can run it on fake values; --apply
# refuses to run with it set elsewhere, since sysctl writes the real /proc/sys.
# CORECAST_UNIT and CORECAST_CONFIG name the unit and config file to report (default
# deploy/corecast.service and deploy/corecast.toml).
set -euo pipefail

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {
  echo "tune-host.sh: $*" >&2
  exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
connections=100000
apply=0
while [ $# -gt 0 ]; do
  case $1 in
    --connections) [ $# -ge 2 ] || die "--connections needs a value"; connections=$2; shift 2 ;;
    --connections=*) connections=${1#*=}; shift ;;
    --apply) apply=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
if ! [[ $connections =~ ^[0-9]+$ ]] || [ "$connections" -lt 1 ] || [ "$connections" -gt 100000000 ]; then
  die "--connections must be a number from 1 to 100000000, not $connections"
fi

proc=${CORECAST_PROC_ROOT:-/proc}
unit=${CORECAST_UNIT:-$repo/deploy/corecast.service}
config=${CORECAST_CONFIG:-$repo/deploy/corecast.toml}
if [ $apply -eq 1 ]; then
  [ "$proc" = /proc ] || die "--apply writes the live /proc/sys; it cannot apply values read from CORECAST_PROC_ROOT=$proc"
  [ "$(id -u)" -eq 0 ] || die "--apply needs root (sysctl -w)"
  command -v sysctl >/dev/null 2>&1 || die "sysctl not found (apt-get install procps)"
fi

# Descriptors corecast needs beyond its clients: listeners, rings, logs, a margin (the
# binary's SPARE_DESCRIPTORS).
spare=256
need_fds=$((connections + spare))

# read_key KEY: the current value of a sysctl, whitespace squeezed, or empty when absent.
read_key() {
  local file=$proc/sys/${1//.//}
  if [ -r "$file" ]; then
    tr -s ' \t\n' '   ' <"$file" | sed 's/^ //; s/ $//'
  fi
}

max() { if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi; }
min() { if [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }

# max_each "A B C" "X Y Z": the field-wise maximum of two triples.
max_each() {
  local -a a b out=()
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  local i
  for i in 0 1 2; do out+=("$(max "${a[$i]}" "${b[$i]}")"); done
  echo "${out[*]}"
}

page=4096
if command -v getconf >/dev/null 2>&1; then page=$(getconf PAGESIZE 2>/dev/null || echo 4096); fi
mem_pages=""
if [ -r "$proc/meminfo" ]; then
  mem_kib=$(awk '/^MemTotal:/ { print $2 }' "$proc/meminfo")
  [ -n "$mem_kib" ] && mem_pages=$((mem_kib * 1024 / page))
fi

# propose KEY CURRENT: sets `new` (the proposed value) and `why`.
propose() {
  local key=$1 cur=$2
  case $key in
    net.core.somaxconn)
      why="accept queue cap per listener; corecast asks 1024 per shard listener, 4096 leaves room"
      new=$(max "$cur" 4096) ;;
    net.ipv4.tcp_max_syn_backlog)
      why="half-open connections per listener during a reconnect storm before SYN cookies"
      new=$(max "$cur" 4096) ;;
    net.ipv4.tcp_rmem)
      why="per-socket receive buffer (min default max), autotuned; kept unless below the kernel's defaults"
      new=$(max_each "$cur" "4096 131072 6291456") ;;
    net.ipv4.tcp_wmem)
      why="per-socket send buffer (min default max), autotuned; corecast's own cap per subscriber is max_pending_bytes"
      new=$(max_each "$cur" "4096 16384 4194304") ;;
    net.ipv4.tcp_mem)
      # Pages for all TCP sockets together: idle connections hold none; budget 4/8/16 KiB
      # queued per connection at min/pressure/max, never more than half of RAM.
      local per min_p pres max_p cap
      per=$((1024 * connections / page))
      min_p=$((4 * per)) pres=$((8 * per)) max_p=$((16 * per))
      if [ -n "$mem_pages" ]; then
        cap=$((mem_pages / 2))
        min_p=$(min "$min_p" "$cap") pres=$(min "$pres" "$cap") max_p=$(min "$max_p" "$cap")
      fi
      why="pages for all TCP buffers (min pressure max); budget 16 KiB queued per connection at max, at most half of RAM"
      new=$(max_each "$cur" "$min_p $pres $max_p") ;;
    net.ipv4.ip_local_port_range)
      # Only clients on this host use it (corecast-bench, a proxy in front of corecast); a
      # start at 10000 keeps ephemeral ports off 6379 and 8080.
      local lo hi
      read -r lo hi <<<"$cur"
      why="ephemeral ports for clients on this host (load generators, proxies); starts above 6379/8080"
      new="$(min "$lo" 10000) $(max "$hi" 65535)" ;;
    fs.nr_open)
      why="per-process descriptor ceiling: at least $need_fds and the unit's LimitNOFILE ($unit_nofile)"
      local want=$need_fds
      [[ $unit_nofile =~ ^[0-9]+$ ]] && want=$(max "$want" "$unit_nofile")
      new=$(max "$cur" "$want") ;;
    kernel.io_uring_disabled)
      why="corecast does all its I/O through io_uring: 0 lets every user use it; with 1, add corecast's user to the group kernel.io_uring_group (not changed by --apply)"
      manual=1
      new=0 ;;
    fs.file-max)
      why="descriptors on the whole host: corecast's $need_fds plus 65536 for everything else"
      new=$(max "$cur" $((need_fds + 65536))) ;;
  esac
}

# unit_limit NAME: a Limit*= value from the systemd unit, or "unset".
unit_limit() {
  local v=""
  [ -r "$unit" ] && v=$(sed -n "s/^[[:space:]]*$1=[[:space:]]*//p" "$unit" | tail -n 1)
  echo "${v:-unset}"
}
unit_nofile=$(unit_limit LimitNOFILE)
unit_memlock=$(unit_limit LimitMEMLOCK)

keys=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.tcp_rmem net.ipv4.tcp_wmem
      net.ipv4.tcp_mem net.ipv4.ip_local_port_range fs.nr_open fs.file-max
      kernel.io_uring_disabled)
row() { printf '%-30s %-26s %-26s %s\n' "$@"; }

echo "# corecast host tuning for $connections connections (current values from $proc/sys)"
row "# setting" "current" "proposed" "why"
changes=()
for key in "${keys[@]}"; do
  cur=$(read_key "$key")
  if [ -z "$cur" ]; then
    row "$key" "(absent)" "-" "not in this kernel"
    continue
  fi
  manual=0
  propose "$key" "$cur"
  if [ "$new" = "$cur" ]; then
    row "$key" "$cur" "$new" "ok: $why"
  elif [ $manual -eq 1 ]; then
    row "$key" "$cur" "$new" "check: $why"
  else
    row "$key" "$cur" "$new" "raise: $why"
    changes+=("$key=$new")
  fi
done

# Process limits: not sysctls. corecast raises its soft open-files limit to the hard one at
# start, so the hard limit is what counts.
echo
echo "# process limits (not sysctls: set them in the unit, or limits.conf for a shell)"
nofile_soft=$(ulimit -Sn) nofile_hard=$(ulimit -Hn)
memlock_soft=$(ulimit -Sl) memlock_hard=$(ulimit -Hl)
verdict() { if [ "$1" = unlimited ] || [ "$1" = infinity ] || { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }; then echo ok; else echo "too low"; fi; }
row "open files (ulimit -n)" "soft $nofile_soft hard $nofile_hard" ">= $need_fds" "$(verdict "$nofile_hard" "$need_fds"): corecast raises soft to hard; one descriptor per connection + $spare"
row "open files (unit)" "LimitNOFILE=$unit_nofile" ">= $need_fds" "$(verdict "$unit_nofile" "$need_fds"): $unit"
row "memlock (ulimit -l, KiB)" "soft $memlock_soft hard $memlock_hard" "unlimited" "zero-copy sends pin their pages until the kernel is done (zerocopy_threshold > 0)"
case $unit_memlock in infinity|unlimited) v=ok ;; *) v="limited" ;; esac
row "memlock (unit)" "LimitMEMLOCK=$unit_memlock" "infinity" "$v: $unit"
max_conn=""
[ -r "$config" ] && max_conn=$(sed -n 's/^[[:space:]]*max_connections[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$config" | tail -n 1)
row "max_connections (config)" "${max_conn:-10000 (default)}" "$connections" "$(verdict "${max_conn:-10000}" "$connections"): $config"

echo
if [ ${#changes[@]} -eq 0 ]; then
  echo "# every kernel setting is already at or above the proposal"
  exit 0
fi
if [ $apply -eq 0 ]; then
  echo "# nothing was changed; to apply the proposals (as root):"
  echo "#   scripts/tune-host.sh --connections $connections --apply"
else
  for kv in "${changes[@]}"; do
    echo "+ sysctl -w ${kv%%=*}=\"${kv#*=}\""
    sysctl -w "${kv%%=*}=${kv#*=}" >/dev/null
  done
  echo "# applied ${#changes[@]} setting(s); they last until reboot"
fi
echo "# to keep them across reboots: install deploy/sysctl-corecast.conf (sized for 100000"
echo "# connections) and load it, adjusting it to these values first:"
echo "#   sudo install -m 0644 deploy/sysctl-corecast.conf /etc/sysctl.d/90-corecast.conf"
echo "#   sudo sysctl --system"
echo "# the proposed values as sysctl.d lines:"
for kv in "${changes[@]}"; do
  echo "${kv%%=*} = ${kv#*=}"
done
