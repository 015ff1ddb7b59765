#!/usr/bin/env bash
# The server code's memory errors, as root:
#   bash test/valgrind.sh
# Debian's server cannot show them: palloc'd memory freed with its memory
# context, or reused from a context's free list, still reads as valid
# there.  So this builds PostgreSQL from Debian's source of the installed
# version with assertions (freed memory is overwritten, every context
# checked) and USE_VALGRIND (palloc tells Valgrind what is allocated),
# installs propensity into it, and
#   1. runs the whole regression suite on that server (all but over_time,
#      which needs pg_cron; the chained upgrade tests are followed by a
#      fresh install for the rest): a read of freed memory reads garbage
#      and fails a test or an assertion;
#   2. runs the tests of VG_TESTS with the server under Valgrind's memcheck
#      (every backend and worker) and fails on any error it reports.  Under
#      Valgrind the whole suite takes hours; VG_TESTS=all runs it.
# VG_DIR keeps the PostgreSQL build between runs.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
VG_DIR=${VG_DIR:-/tmp/propensity-valgrind}
PORT=${VG_PORT:-5493}

bash "$src/docker/install-deps.sh"
. "$src/docker/pg-temp.sh"
mkdir -p "$VG_DIR"
prefix=$VG_DIR/pg
if [ ! -x "$prefix/bin/postgres" ] || [ ! -f "$VG_DIR/pg-version" ]; then
    # the installed version's source, else another PostgreSQL 15 the mirror
    # has (the security suite's sources may be missing): any serves
    lists=$VG_DIR/apt-lists
    parts=$VG_DIR/apt-sources
    rm -rf "$parts"
    mkdir -p "$lists/partial" "$parts"
    # the machine's sources, as deb-src (deb822 files and one-line lists)
    for f in /etc/apt/sources.list.d/*.sources; do
        if [ -f "$f" ]; then sed -e 's/^Types:.*/Types: deb-src/' "$f" > "$parts/$(basename "$f")"; fi
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -n 's/^deb \(.*\)/deb-src \1/p' > "$parts/machine.list" || true
    apt_src=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$parts"
             -o Dir::State::Lists="$lists")
    apt-get "${apt_src[@]}" update -qq
    got=
    for v in "$(dpkg-query -W -f='${Version}' postgresql-15)" \
             $(apt-cache "${apt_src[@]}" showsrc postgresql-15 | sed -n 's/^Version: //p'); do
        if (cd "$VG_DIR" && apt-get "${apt_src[@]}" source --download-only "postgresql-15=$v" >/dev/null 2>&1); then
            got=$v
            break
        fi
    done
    [ -n "$got" ] || { echo "no source of postgresql-15 could be downloaded" >&2; exit 1; }
    upstream=${got%%-*}
    echo "== PostgreSQL $upstream from Debian's source, with assertions and USE_VALGRIND"
    rm -rf "$VG_DIR/postgresql-$upstream"
    tar -C "$VG_DIR" -xf "$(ls "$VG_DIR"/postgresql-15_"$upstream".orig.tar.*)"
    (cd "$VG_DIR/postgresql-$upstream" &&
        ./configure --prefix="$prefix" --enable-cassert --enable-debug --without-readline \
            --without-zlib --without-icu --without-lz4 --without-zstd \
            CFLAGS="-O1 -ggdb -DUSE_VALGRIND" >"$VG_DIR/configure.log" 2>&1 &&
        make -j"$(nproc)" -s >"$VG_DIR/make.log" 2>&1 &&
        make -s install >/dev/null &&
        make -C contrib/dblink -s install >/dev/null)
    echo "$upstream" > "$VG_DIR/pg-version"
fi
upstream=$(cat "$VG_DIR/pg-version")
supp=$VG_DIR/postgresql-$upstream/src/tools/valgrind.supp

echo "== propensity for it"
work=$VG_DIR/build
rm -rf "$work"
mkdir -p "$work"
cp -a "$src/." "$work/"
rm -rf "$work/.git"
make -C "$work" -s clean PG_CONFIG="$prefix/bin/pg_config" >/dev/null
make -C "$work" -s PG_CONFIG="$prefix/bin/pg_config" PG_CFLAGS_EXTRA=-Werror >/dev/null
make -C "$work" -s PG_CONFIG="$prefix/bin/pg_config" install >/dev/null
chown -R "$PG_USER" "$VG_DIR"

all_tests=$(sed -n 's/^REGRESS = //p' "$src/Makefile")
VG_TESTS=${VG_TESTS:-features parallel attribution queue ingest_limits logistic fitting registry privileges operations null_args}
[ "$VG_TESTS" = all ] && VG_TESTS=$all_tests
data=$VG_DIR/data
logs=$VG_DIR/valgrind-logs
regress=$prefix/lib/postgresql/pgxs/src/test/regress/pg_regress
status=0

# start_server [valgrind]: a fresh cluster, its server run directly or under
# memcheck (PGHOST and PGPORT for the tests' dblink connections)
start_server() {
    rm -rf "$data"
    as_pg "$prefix/bin/initdb" -D "$data" -A trust -U postgres >/dev/null
    {
        echo "port = $PORT"
        echo "unix_socket_directories = '$VG_DIR'"
        echo "listen_addresses = ''"
        grep -v -e '^shared_preload_libraries' -e '^cron\.' "$src/test/regress.conf"
        echo "shared_preload_libraries = 'propensity'"
        echo "max_connections = 20"
    } >> "$data/postgresql.conf"
    if [ "${1:-}" = valgrind ]; then
        rm -rf "$logs"
        mkdir -p "$logs"
        chown "$PG_USER" "$logs"
        as_pg env PGHOST="$VG_DIR" PGPORT=$PORT valgrind --quiet --trace-children=yes --track-origins=${VG_TRACK_ORIGINS:-no} --num-callers=30 \
            --leak-check=no --error-limit=no --suppressions="$supp" \
            --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END --log-file="$logs/%p.log" \
            "$prefix/bin/postgres" -D "$data" >"$VG_DIR/server.log" 2>&1 &
    else
        as_pg env PGHOST="$VG_DIR" PGPORT=$PORT "$prefix/bin/postgres" -D "$data" >"$VG_DIR/server.log" 2>&1 &
    fi
    for i in $(seq 1 300); do
        as_pg "$prefix/bin/pg_isready" -q -h "$VG_DIR" -p $PORT && return 0
        sleep 1
    done
    echo "the server did not start" >&2
    cat "$VG_DIR/server.log" >&2
    return 1
}
stop_server() {
    # (a fast shutdown during crash recovery can wait on the checkpointer
    # for ever: PostgreSQL 15's postmaster, not ours)
    as_pg "$prefix/bin/pg_ctl" -D "$data" -m fast -w -t 300 stop >/dev/null 2>&1 ||
        as_pg "$prefix/bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    # a crash, a failed assertion
    grep -E -A3 'TRAP:|terminated by signal' "$VG_DIR/server.log" >&2 || true
}
trap stop_server EXIT

# run_tests name test...: pg_regress on a new database, the tests after
# over_time on a fresh install (over_time leaves the chained upgrade's, and
# the topics' tables, which are not the extension's members)
run_tests() {
    local out=$work/results-$1 before=() after=() seen= t
    shift
    for t in "$@"; do
        case $t in
            over_time) seen=1 ;;
            *) if [ -n "$seen" ]; then after+=("$t"); else before+=("$t"); fi ;;
        esac
    done
    as_pg "$prefix/bin/psql" -X -q -h "$VG_DIR" -p $PORT -d postgres \
        -c "DROP DATABASE IF EXISTS contrib_regression" -c "CREATE DATABASE contrib_regression"
    if [ ${#before[@]} -gt 0 ]; then
        (cd "$work" && as_pg "$regress" --inputdir=. --host="$VG_DIR" --port=$PORT --use-existing \
            --dbname=contrib_regression --outputdir="$out-a" "${before[@]}") ||
            { status=1; cat "$out-a/regression.diffs" 2>/dev/null | head -200 || true; }
    fi
    if [ ${#after[@]} -gt 0 ]; then
        as_pg "$prefix/bin/psql" -X -q -h "$VG_DIR" -p $PORT -d contrib_regression \
            -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS propensity CASCADE" \
            -c "DROP SCHEMA IF EXISTS propensity CASCADE" -c "CREATE EXTENSION propensity"
        (cd "$work" && as_pg "$regress" --inputdir=. --host="$VG_DIR" --port=$PORT --use-existing \
            --dbname=contrib_regression --outputdir="$out-b" "${after[@]}") ||
            { status=1; cat "$out-b/regression.diffs" 2>/dev/null | head -200 || true; }
    fi
}

echo "== pg_regress on the assertion-enabled server"
start_server
# shellcheck disable=SC2086
run_tests cassert $all_tests
stop_server

echo "== pg_regress with the server under Valgrind: $VG_TESTS"
start_server valgrind
# shellcheck disable=SC2086
run_tests valgrind $VG_TESTS
stop_server
trap - EXIT

errors=$(grep -l VALGRINDERROR-BEGIN "$logs"/*.log 2>/dev/null || true)
if [ -n "$errors" ]; then
    echo "== Valgrind found errors in $(echo "$errors" | wc -l) processes:"
    for f in $errors; do echo "-- $f"; sed -n '/VALGRINDERROR-BEGIN/,/VALGRINDERROR-END/p' "$f" | head -80; done
    status=1
else
    echo "Valgrind: no errors in $(ls "$logs" | wc -l) processes"
fi
exit $status
