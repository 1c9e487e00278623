# Sourced by the scripts: installs the Debian packages the build needs
# (libclang-dev for RocksDB's bindings, a C++ compiler, make; curl for the
# scripts' health checks), only those that are missing. With
# LOCKSTEP_NEED_NATS=1 set before it is sourced, also nats-server (the
# message bus on NATS JetStream: its tests, `scripts/testnet.sh start --bus
# nats`); Debian installs it in /usr/sbin.
missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# With LOCKSTEP_NEED_POSTGRES=1 set before it is sourced, also PostgreSQL
# (the ledger on PostgreSQL: its tests, `scripts/testnet.sh start --ledger
# postgres`): the server binaries under /usr/lib/postgresql and psql.
if [ "${LOCKSTEP_NEED_POSTGRES:-0}" = 1 ] && { ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    ! command -v psql >/dev/null 2>&1; }; then
    missing+=(postgresql)
fi
if [ "${LOCKSTEP_NEED_NATS:-0}" = 1 ] && ! command -v nats-server >/dev/null 2>&1 &&
    [ ! -x /usr/sbin/nats-server ]; then
    missing+=(nats-server)
fi
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
