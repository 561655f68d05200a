"""Validates corecast's /metrics text (stdin) with the Prometheus client's own parser."""
import sys

from prometheus_client.parser import text_string_to_metric_families

REQUIRED = {
    "corecast_connections",
    "corecast_published",
    "corecast_delivered",
    "corecast_slow_consumer_disconnects",
    "corecast_ring_full",
    "corecast_publish_to_send_latency_seconds",
    "corecast_send_complete_latency_seconds",
    "corecast_turn_duration_seconds",
}

text = sys.stdin.read()
families = {f.name: f for f in text_string_to_metric_families(text)}
missing = REQUIRED - families.keys()
if missing:
    sys.exit(f"missing metric families: {sorted(missing)}")
for name, fam in families.items():
    if not fam.samples:
        sys.exit(f"{name} has no samples")
    for s in fam.samples:
        if "shard" not in s.labels:
            sys.exit(f"{s.name} lacks a shard label")
if families["corecast_published"].type != "counter":
    sys.exit("corecast_published should be a counter")
if families["corecast_publish_to_send_latency_seconds"].type != "summary":
    sys.exit("latency should be a summary")
print(f"ok: {len(families)} families")
