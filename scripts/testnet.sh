#!/usr/bin/env bash
# A local testnet of N validators, each its own lockstep-node process on
# loopback ports, talking over libp2p.
#
#   scripts/testnet.sh start [N]   build (release), write a chain spec and N
#                                  validator keys into run/testnet/, start N
#                                  validators (default 4), wait until blocks
#                                  are finalized, print the RPC URLs
#   scripts/testnet.sh status      each node: pid, finalized height, peers
#   scripts/testnet.sh stop        stop the nodes this script started (by
#                                  the pids recorded in run/testnet/pids)
#
# `start` wipes run/testnet/ from an earlier run (stop it first). Each node
# keeps its data in run/testnet/node-<i>/ and logs to run/testnet/node-<i>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=run/testnet
PIDS="$RUN_DIR/pids"
NODES="$RUN_DIR/nodes"
# Built binaries live where cargo puts them (CARGO_TARGET_DIR, when set).
RELEASE="${CARGO_TARGET_DIR:-target}/release"
BIN="$RELEASE/lockstep-node"

rpc() { # rpc PORT METHOD [PARAMS-JSON]
    curl -s --max-time 2 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" \
        "http://127.0.0.1:$1" 2>/dev/null || true
}

finalized() { # finalized PORT -> height or empty
    rpc "$1" chain_getHeader | sed -n 's/.*"number":\([0-9]*\).*/\1/p'
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

next_free_port() { # next_free_port FROM, skipping ports already chosen
    local port=$1
    while port_in_use "$port" || grep -qw "$port" "$NODES" 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

running_pids() {
    [ -f "$PIDS" ] || return 0
    while read -r index pid; do
        if kill -0 "$pid" 2>/dev/null && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "lockstep-node" ]; then
            echo "$index $pid"
        fi
    done <"$PIDS"
}

start() {
    local count=${1:-4}
    if ! [[ "$count" =~ ^[0-9]+$ ]] || [ "$count" -lt 1 ] || [ "$count" -gt 100 ]; then
        echo "usage: $0 start [N], N between 1 and 100" >&2
        exit 2
    fi
    if [ -n "$(running_pids)" ]; then
        echo "a testnet is running already (scripts/testnet.sh status); stop it first" >&2
        exit 1
    fi
    source scripts/lib/ensure-packages.sh
    echo "==> cargo build --release --locked"
    cargo build --release --locked --bin lockstep-node --bin lockstep --bin lockstep-offchain

    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    "$BIN" build-spec --validators "$count" --out "$RUN_DIR" >/dev/null
    : >"$NODES"
    : >"$PIDS"
    local i rpc_port p2p_port
    for ((i = 0; i < count; i++)); do
        rpc_port=$(next_free_port $((9944 + i)))
        echo "$i $rpc_port -" >>"$NODES"
        p2p_port=$(next_free_port $((30333 + i)))
        sed -i "\$s/-\$/$p2p_port/" "$NODES"
    done
    while read -r i rpc_port p2p_port; do
        local bootnodes=""
        while read -r j _ other_p2p; do
            [ "$j" = "$i" ] || bootnodes="$bootnodes${bootnodes:+,}/ip4/127.0.0.1/tcp/$other_p2p"
        done <"$NODES"
        "$BIN" run --chain "$RUN_DIR/chain-spec.json" --key "$RUN_DIR/validator-$i.json" \
            --base-path "$RUN_DIR/node-$i" --rpc-port "$rpc_port" \
            --p2p-host 127.0.0.1 --p2p-port "$p2p_port" \
            ${bootnodes:+--bootnodes "$bootnodes"} \
            >"$RUN_DIR/node-$i.log" 2>&1 &
        echo "$i $!" >>"$PIDS"
    done <"$NODES"

    echo "==> waiting for every node to finalize block 2 (at most 60 s)"
    local deadline=$((SECONDS + 60)) done_count=0
    while [ "$SECONDS" -lt "$deadline" ]; do
        done_count=0
        while read -r i rpc_port _; do
            local height
            height=$(finalized "$rpc_port")
            [ -n "$height" ] && [ "$height" -ge 2 ] && done_count=$((done_count + 1))
        done <"$NODES"
        [ "$done_count" -eq "$count" ] && break
        sleep 0.5
    done
    if [ "$done_count" -ne "$count" ]; then
        echo "only $done_count of $count nodes finalized block 2 in time; logs in $RUN_DIR/node-*.log" >&2
        status
        exit 1
    fi
    echo
    echo "testnet of $count validators is finalizing blocks:"
    while read -r i rpc_port p2p_port; do
        echo "  node $i: JSON-RPC http://127.0.0.1:$rpc_port (ws://127.0.0.1:$rpc_port), p2p /ip4/127.0.0.1/tcp/$p2p_port, log $RUN_DIR/node-$i.log"
    done <"$NODES"
    local first_rpc
    first_rpc=$(awk 'NR==1 {print $2}' "$NODES")
    cat <<NEXT

next:
  $RELEASE/lockstep --rpc http://127.0.0.1:$first_rpc transfer --from alice --to bob --amount 100 --wait
  scripts/testnet.sh status
  scripts/testnet.sh stop
NEXT
}

status() {
    if [ ! -f "$NODES" ]; then
        echo "no testnet in $RUN_DIR (scripts/testnet.sh start)"
        return 0
    fi
    local alive
    alive=$(running_pids)
    while read -r i rpc_port p2p_port; do
        local pid height peers state
        pid=$(awk -v i="$i" '$1 == i {print $2}' <<<"$alive")
        if [ -n "$pid" ]; then
            height=$(finalized "$rpc_port")
            peers=$(rpc "$rpc_port" system_health | sed -n 's/.*"peers":\([0-9]*\).*/\1/p')
            state="running (pid $pid), finalized #${height:-?}, ${peers:-?} peers"
        else
            state="stopped"
        fi
        echo "node $i: $state, RPC http://127.0.0.1:$rpc_port"
    done <"$NODES"
}

stop() {
    local alive
    alive=$(running_pids)
    if [ -z "$alive" ]; then
        echo "no testnet node is running"
        return 0
    fi
    while read -r i pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done <<<"$alive"
    local deadline=$((SECONDS + 15))
    while [ -n "$(running_pids)" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    while read -r i pid; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "node $i (pid $pid) did not stop in time: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <<<"$(running_pids)"
    echo "stopped $(wc -l <<<"$alive") node(s); data and logs stay in $RUN_DIR"
}

case "${1:-}" in
start) start "${2:-4}" ;;
status) status ;;
stop) stop ;;
*)
    echo "usage: $0 start [N] | status | stop" >&2
    exit 2
    ;;
esac
