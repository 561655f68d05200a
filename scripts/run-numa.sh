#!/usr/bin/env bash
# Starts corecast with one shard per CPU of a NUMA node, memory bound to that node.
# Usage: scripts/run-numa.sh NODE [corecast options...]
set -euo pipefail
node=${1:?usage: run-numa.sh NODE [options]}
shift
bin=${CORECAST_BIN:-target/release/corecast}
command -v numactl >/dev/null || { echo "numactl not installed (apt-get install numactl)" >&2; exit 1; }
exec numactl --cpunodebind="$node" --membind="$node" "$bin" "$@"
