# Sourced by scripts/testnet.sh: a PostgreSQL cluster of the testnet's own,
# for `start --ledger postgres`. The data lives in run/testnet/postgres, the
# server listens on a loopback port only (trust authentication: nobody but
# this machine's users can reach it), and it runs as the `postgres` user
# when this script runs as root (PostgreSQL refuses root). Debian's
# `postgresql` package provides it (installed when missing).

pg_bin() { # the directory of initdb/postgres/pg_ctl: Debian's newest, else PATH
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    else
        echo "no PostgreSQL server binaries (initdb); install Debian's postgresql" >&2
        return 1
    fi
}

as_postgres() { # as_postgres COMMAND...: as the postgres user when root
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --init-groups "$@"
    else
        "$@"
    fi
}

pg_start() { # pg_start DATA PORT LOG: initdb, start, record the pid, create the ledger db
    local data=$1 port=$2 log=$3 bin
    bin=$(pg_bin)
    mkdir -p "$data"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$data"
    chmod 700 "$data"
    as_postgres "$bin/initdb" -D "$data" --locale=C -E UTF8 -A trust -U postgres >"$log" 2>&1
    # A simple command in the background, so that $! is the server itself
    # (setpriv execs it): a function there would record a bash subshell,
    # which `status` and `stop` would not take for the server.
    local server=("$bin/postgres" -D "$data" -p "$port" -c listen_addresses=127.0.0.1
        -c unix_socket_directories=)
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --init-groups \
            "${server[@]}" >>"$log" 2>&1 &
    else
        "${server[@]}" >>"$log" 2>&1 &
    fi
    echo "postgres $! postgres" >>"$PIDS"
    local deadline=$((SECONDS + 30))
    until psql -X -q -d "postgres://postgres@127.0.0.1:$port/postgres" -c 'SELECT 1' >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "PostgreSQL did not start; see $log" >&2
            exit 1
        fi
        sleep 0.3
    done
    psql -X -q -d "postgres://postgres@127.0.0.1:$port/postgres" -c 'CREATE DATABASE ledger' >/dev/null
}
