#!/usr/bin/env bash
# The whole test suite, from nothing, on Debian 12 as root:
#   bash test/run-tests.sh
# Installs what is missing, builds warning-free (-Werror), installs the
# extension, runs the standalone core tests (ASan + UBSan, then Valgrind),
# fuzzes the Avro decoder for 30 s, checks the Avro schemas, runs pg_regress
# against a temporary instance it starts itself, runs it again on a
# PostgreSQL built with assertions and in part with that server under
# Valgrind (test/valgrind.sh), and the TAP tests (PostgreSQL::Test::Cluster)
# that kill the server during ingest, run concurrent producers, and install
# model versions while the worker keeps a score history.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

bash "$src/docker/install-deps.sh"
. "$src/docker/pg-temp.sh"

# pg_regress runs as postgres and writes next to the tests: work on a copy
work=$(mktemp -d /tmp/propensity-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$src/." "$work/"
rm -rf "$work/.git"
make -C "$work" -s clean >/dev/null
chown -R "$PG_USER" "$work"

passed=0
failed=0

echo "== build (warnings are errors)"
build_and_install "$work"

echo "== core tests (ASan, UBSan)"
if make -C "$work" -s test-core; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== core tests (Valgrind)"
if make -C "$work" -s test-core-valgrind; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== fuzz: Avro decoder, libFuzzer + ASan + UBSan, 30 s"
if make -C "$work" -s fuzz-avro FUZZ_SECONDS=30 >"$work/fuzz.log" 2>&1; then
    passed=$((passed + 1)); tail -1 "$work/fuzz.log"
else
    failed=$((failed + 1)); tail -40 "$work/fuzz.log"
fi

echo "== Avro schemas; the documentation covers the SQL and stays in the repository"
if prove "$work/test/schemas.t" "$src/test/docs.t"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== pg_regress"
if as_pg make -C "$work" -s installcheck \
        EXTRA_REGRESS_OPTS="--temp-instance=$work/tmp_check"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "---- regression.diffs"
    cat "$work/regression.diffs" 2>/dev/null || true
fi

echo "== the server code's memory errors: the suite on an assertion-enabled PostgreSQL, part under Valgrind"
if bash "$src/test/valgrind.sh"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "== TAP (SIGKILL during ingest, concurrent producers, model versions during ingest, hostile input, Kafka, schema registry)"
if as_pg make -C "$work" -s tap; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
