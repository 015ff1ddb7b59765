#!/usr/bin/env bash
# Installs what building, testing and running propensity needs on Debian 12,
# skipping what is already there.  Run as root.
set -euo pipefail

packages=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-cron
    build-essential libipc-run-perl valgrind libavro-dev pkg-config clang libclang-rt-14-dev
    librdkafka-dev libcurl4-openssl-dev kcat python3-avro python3-confluent-kafka
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
