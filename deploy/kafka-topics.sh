#!/usr/bin/env bash
# Create contactstream's topics on an Apache Kafka cluster (idempotent: --if-not-exists).
#
#   deploy/kafka-topics.sh -b kafka-1:9092 [-p contactstream] [-n 12] [-r 3]
#                          [--dlq-retention-ms 2592000000] [--command-config client.properties]
#                          [--max-message-bytes 8388608] [--dry-run]
#
# The interactions log is the source of truth for replay, so it (and the cases and alerts
# topics) keep everything: cleanup.policy=delete with retention.ms=-1. The DLQ keeps
# records for --dlq-retention-ms (default 30 days). Every topic takes records up to
# --max-message-bytes (default 8 MiB, the largest Avro record; the brokers' own
# message.max.bytes and replica.fetch.max.bytes must allow as much). Choose the partition
# count up front: adding partitions later moves customer keys to other partitions, and
# interactions.v1 and cases.v1 get the same count (a customer's records meet on partition
# N of both, docs/ARCHITECTURE.md "Many workers").
# KAFKA_TOPICS overrides the tool's name (e.g. `kafka-topics` in Confluent packages).
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP_SERVERS:-}"
prefix="${CONTACTSTREAM_TOPIC_PREFIX:-contactstream}"
partitions="${CONTACTSTREAM_PARTITIONS:-12}"
replication="${CONTACTSTREAM_REPLICATION_FACTOR:-3}"
dlq_retention_ms=$((30 * 24 * 3600 * 1000))
max_message_bytes=$((8 * 1024 * 1024))
command_config=""
dry_run=0
tool="${KAFKA_TOPICS:-kafka-topics.sh}"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -b|--bootstrap-server) bootstrap="$2"; shift 2 ;;
    -p|--prefix) prefix="$2"; shift 2 ;;
    -n|--partitions) partitions="$2"; shift 2 ;;
    -r|--replication-factor) replication="$2"; shift 2 ;;
    --dlq-retention-ms) dlq_retention_ms="$2"; shift 2 ;;
    --max-message-bytes) max_message_bytes="$2"; shift 2 ;;
    --command-config) command_config="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done

[[ -n "$bootstrap" ]] || { echo "give -b BOOTSTRAP (or set KAFKA_BOOTSTRAP_SERVERS)" >&2; exit 2; }
[[ "$partitions" =~ ^[1-9][0-9]*$ ]] || { echo "partitions: a positive integer" >&2; exit 2; }
[[ "$replication" =~ ^[1-9][0-9]*$ ]] || { echo "replication: a positive integer" >&2; exit 2; }
[[ "$max_message_bytes" =~ ^[1-9][0-9]*$ ]] || { echo "max message bytes: a positive integer" >&2; exit 2; }

# acks=all is only as strong as min.insync.replicas (one less than RF, at least 1)
min_isr=$(( replication > 1 ? replication - 1 : 1 ))

create() {  # name partitions config...
  local name="$1" parts="$2"; shift 2
  local cmd=("$tool" --bootstrap-server "$bootstrap" --create --if-not-exists
             --topic "$name" --partitions "$parts" --replication-factor "$replication"
             --config "min.insync.replicas=$min_isr"
             --config "max.message.bytes=$max_message_bytes")
  [[ -n "$command_config" ]] && cmd+=(--command-config "$command_config")
  for c in "$@"; do cmd+=(--config "$c"); done
  if (( dry_run )); then printf '%q ' "${cmd[@]}"; echo; else "${cmd[@]}"; fi
}

keep_forever=(cleanup.policy=delete retention.ms=-1 retention.bytes=-1)

create "$prefix.interactions.v1"  "$partitions" "${keep_forever[@]}"
create "$prefix.interactions.dlq" "$partitions" cleanup.policy=delete "retention.ms=$dlq_retention_ms"
# case events (outbox relay of the case store; read back by the projector) and alerts
# (outbox relay of the alert log; for other systems)
create "$prefix.cases.v1"         "$partitions" "${keep_forever[@]}"
create "$prefix.alerts.v1"        "$partitions" "${keep_forever[@]}"
# faust's leader-election topic for the worker app (id "$prefix-worker"); the worker does
# not declare topics itself
create "$prefix-worker-__assignor-__leader" 1 cleanup.policy=delete

(( dry_run )) || echo "topics for prefix '$prefix' are in place (partitions=$partitions, rf=$replication)" >&2
