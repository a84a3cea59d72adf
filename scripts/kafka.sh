#!/usr/bin/env bash
# A real single-node Kafka (KRaft) on 127.0.0.1 for the cluster tests and local clusters.
#   scripts/kafka.sh start     fetch the broker jars once (Maven, cached in kafka/lib), format, start
#   scripts/kafka.sh stop      stop the broker started here (by its PID)
#   scripts/kafka.sh restart   stop then start, keeping the data
#   scripts/kafka.sh status    running or not
#   scripts/kafka.sh reset     stop and delete the data
# Settings: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_DATA_DIR (kafka/data).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lib="$here/kafka/lib"
data="${KAFKA_DATA_DIR:-$here/kafka/data}"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-9093}"
pidfile="$data/kafka.pid"
log="$data/kafka.log"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

fetch_jars() {
  if ! ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1; then
    echo "kafka: fetching broker jars with Maven into kafka/lib (once)"
    mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime
  fi
}

write_config() {
  mkdir -p "$data/logs"
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=3000
PROPS
}

java_cmd() { java -Xmx512m -Xms128m -Dlog4j.configuration="file:$here/kafka/log4j.properties" -cp "$lib/*" "$@"; }

wait_ready() {
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$log" 2>/dev/null; then return 0; fi
    if ! running; then echo "kafka: the broker exited; see $log" >&2; tail -20 "$log" >&2; return 1; fi
    sleep 0.5
  done
  echo "kafka: not ready after 60 s; see $log" >&2
  return 1
}

start() {
  if running; then echo "kafka: already running (pid $(cat "$pidfile"))"; return 0; fi
  fetch_jars
  write_config
  if [ ! -f "$data/logs/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" -c "$data/server.properties" >/dev/null
  fi
  : > "$log"
  nohup java -Xmx512m -Xms128m -Dlog4j.configuration="file:$here/kafka/log4j.properties" -cp "$lib/*" kafka.Kafka "$data/server.properties" >>"$log" 2>&1 &
  echo $! > "$pidfile"
  wait_ready
  echo "kafka: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "kafka: not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"
  echo "kafka: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "kafka: running (pid $(cat "$pidfile"))"; else echo "kafka: not running"; exit 1; fi ;;
  reset) stop; rm -rf "$data"; echo "kafka: data removed" ;;
  *) echo "usage: $0 start|stop|restart|status|reset" >&2; exit 2 ;;
esac
