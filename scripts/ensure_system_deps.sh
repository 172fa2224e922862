#!/usr/bin/env bash
# System packages the test suite talks to for real: redis-server (and redis-cli), promtool (Debian's
# prometheus package), docker-compose, wrk, haproxy (scripts/topology.py; Debian's package does not start it
# where policy-rc.d forbids, as in containers). Installs them with apt-get when missing and we are root;
# otherwise says what to do.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; install them (e.g. sudo apt-get install -y ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
