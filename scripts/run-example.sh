#!/usr/bin/env bash
# `make run`: the daemon with the example config, simulated devices and a simulated modality.
# Starts a private Mosquitto on the configured loopback address when no broker answers there.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-config/suite.example.toml}
bin=.venv/bin
mkdir -p run

read -r host port < <("$bin/python" - "$config" <<'PY'
import sys
from pathlib import Path
from suite_daemon.config import load_config
c = load_config(Path(sys.argv[1]))
print(c.mqtt.host, c.mqtt.port)
PY
)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if ! "$bin/python" -c "import socket, sys; socket.create_connection(('$host', $port), timeout=1)" 2>/dev/null; then
  mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  printf 'listener %s %s\nallow_anonymous true\n' "$port" "$host" > run/mosquitto.conf
  echo "no broker at $host:$port: starting a local Mosquitto (run/mosquitto.conf)"
  "$mosquitto" -c run/mosquitto.conf > run/mosquitto.log 2>&1 &
  pids+=($!)
  sleep 0.5
fi

"$bin/suite-daemon" simulate --config "$config" > run/simulate.log 2>&1 &
pids+=($!)
echo "simulated devices and modality: log in run/simulate.log"
echo "watch live events:  mosquitto_sub -h $host -p $port -t 'suite/#' -v"
echo "             or:    $bin/suite-daemon tail --config $config"
"$bin/suite-daemon" run --config "$config" &
pids+=($!)
wait "${pids[-1]}"
