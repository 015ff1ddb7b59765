# Sourced by the demo, test and benchmark scripts: build and install the
# extension, and run a throwaway PostgreSQL 15 cluster as the unprivileged
# user postgres (initdb refuses root).
PG_BIN=/usr/lib/postgresql/15/bin
export PATH="$PG_BIN:$PATH"
PG_USER=postgres

as_pg() { runuser -u "$PG_USER" -- "$@"; }

# build_and_install SRCDIR: compile warning-free and install into PostgreSQL
build_and_install() {
    make -C "$1" -s PG_CONFIG="$PG_BIN/pg_config" PG_CFLAGS_EXTRA=-Werror >/dev/null
    make -C "$1" -s PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
}

# pg_temp_start DIR PORT [extra postgresql.conf lines...]
pg_temp_start() {
    local dir=$1 port=$2; shift 2
    rm -rf "$dir"; mkdir -p "$dir"; chown "$PG_USER" "$dir"
    as_pg initdb -D "$dir/data" -A trust -U postgres >/dev/null
    {
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "listen_addresses = ''"
        echo "shared_preload_libraries = 'propensity'"
        for line in "$@"; do echo "$line"; done
    } >> "$dir/data/postgresql.conf"
    as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    PGHOST=$dir PGPORT=$port
    export PGHOST PGPORT
}

pg_temp_stop() {
    as_pg pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

psql_pg() { as_pg psql -X -v ON_ERROR_STOP=1 -q "$@"; }
