#!/usr/bin/env bash
# The whole Lockstep system on this machine, each part its own process on
# loopback ports: N validators (lockstep-node) over libp2p, the event system
# (lockstep-offchain) with its embedded message bus, and the account bridge
# (lockstep-bridge) with a SQLite ledger seeded for the dev accounts.
#
#   scripts/testnet.sh start [N] [--bus nats] [--ledger postgres] [--bridges B]
#                                  build (release); write a chain spec, N
#                                  validator keys, a bridge key and the
#                                  event system's credentials (a token per
#                                  role) into run/testnet/; seed the ledger; start N
#                                  validators (default 4), the event system
#                                  and the bridge; wait until blocks are
#                                  finalized and the event system follows
#                                  them; print the URLs and what to run next.
#                                  With --bus nats, the message bus is NATS
#                                  JetStream: a nats-server of its own
#                                  (Debian's package, installed when
#                                  missing) with its store in
#                                  run/testnet/nats/, on a loopback port
#                                  from 4222; the event system and the
#                                  bridge run with --bus nats://...
#   scripts/testnet.sh status      every process: pid, height, peers, events
#   scripts/testnet.sh stop        stop what this script started (by the pids
#                                  recorded in run/testnet/pids)
#
# `--ledger postgres` puts the ledger on a PostgreSQL server of the
# testnet's own (scripts/lib/postgres.sh: Debian's postgresql, installed
# when missing; data in run/testnet/postgres, a loopback port) and starts
# two bridges on it instead of one. `--bridges B` (1 to 4) sets how many
# bridges share the bus and the ledger (bridge, bridge-2, ...).
#
# `start` wipes run/testnet/ from an earlier run (stop it first). Data and
# logs stay in run/testnet/ after `stop`: node-<i>/ and node-<i>.log, events/
# and events.log, ledger.sqlite and bridge.log (with --bus nats: nats/ and
# nats.log).
#
# The event system admits only callers with a token: `start` creates one per
# role (submitter, reader, bridge) with `lockstep-offchain token create`,
# whose hashes go into run/testnet/credentials, and writes the tokens into
# run/testnet/env (mode 0600; LOCKSTEP_TOKEN is the submitter's) and the
# bridge's into run/testnet/bridge.token (mode 0600). No token is ever put
# on a command line, where other users could read it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

RUN_DIR=run/testnet
PIDS="$RUN_DIR/pids"
PORTS="$RUN_DIR/ports"
# Built binaries live where cargo puts them (CARGO_TARGET_DIR, when set).
RELEASE="${CARGO_TARGET_DIR:-target}/release"
NODE="$RELEASE/lockstep-node"
EVENTS="$RELEASE/lockstep-offchain"
BRIDGE="$RELEASE/lockstep-bridge"
CLI="$RELEASE/lockstep"
LEDGER="$RUN_DIR/ledger.sqlite"
LEDGER_KIND=sqlite
CREDENTIALS="$RUN_DIR/credentials"
# What each dev account holds in the ledger at the start: 1,000,000.00 USD,
# in cents.
LEDGER_FUNDS=100000000
DEV_NAMES="alice bob charlie dave eve ferdie grace heidi"

rpc() { # rpc PORT METHOD [PARAMS-JSON]
    curl -s --max-time 2 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" \
        "http://127.0.0.1:$1" 2>/dev/null || true
}

finalized() { # finalized PORT -> height or empty
    rpc "$1" chain_getHeader | sed -n 's/.*"number":\([0-9]*\).*/\1/p'
}

json_number() { # json_number FIELD <<<JSON -> the number or empty
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

next_free_port() { # next_free_port FROM, skipping ports already chosen
    local port=$1
    while port_in_use "$port" || grep -qw "$port" "$PORTS" 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

port_of() { # port_of NAME -> the port recorded for it
    awk -v n="$1" '$1 == n {print $2}' "$PORTS"
}

# Every recorded process still running as the binary it was started as
# ("NAME PID" lines).
running() {
    [ -f "$PIDS" ] || return 0
    local name pid binary argv0
    while read -r name pid binary; do
        kill -0 "$pid" 2>/dev/null || continue
        argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)
        [ "$(basename "${argv0:-none}")" = "$binary" ] && echo "$name $pid"
    done <"$PIDS"
}

launch() { # launch NAME LOG BINARY ARGS...: start in the background, record the pid
    local name=$1 log=$2 binary=$3
    shift 3
    "$binary" "$@" >"$log" 2>&1 &
    echo "$name $! $(basename "$binary")" >>"$PIDS"
}

await() { # await WHAT SECONDS COMMAND...: poll COMMAND until it succeeds
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out after ${seconds}s waiting for $what; logs in $RUN_DIR/*.log" >&2
            status
            exit 1
        fi
        sleep 0.5
    done
}

all_nodes_at() { # all_nodes_at HEIGHT
    local i height
    for ((i = 0; i < NODE_COUNT; i++)); do
        height=$(finalized "$(port_of "node-$i")")
        [ -n "$height" ] && [ "$height" -ge "$1" ] || return 1
    done
}

reader_token() { # the reader's token, from run/testnet/env
    sed -n 's/^export LOCKSTEP_READER_TOKEN=//p' "$RUN_DIR/env" 2>/dev/null
}

events_rpc() { # events_rpc METHOD: a call to the event system as the reader
    # The header reaches curl on stdin (-K -), never on its command line.
    printf 'header = "Authorization: Bearer %s"\n' "$(reader_token)" |
        curl -s --max-time 2 -K - -H 'Content-Type: application/json' \
            -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":[]}" \
            "http://127.0.0.1:$(port_of events)" 2>/dev/null || true
}

events_following() {
    [ -n "$(events_rpc event_stats | json_number lastHeight)" ]
}

bridge_running() {
    # Not `running | grep -q`: grep quits at its first match, and under
    # pipefail the SIGPIPE that `running` then gets on its next line (a
    # second bridge) fails the check.
    grep -q '^bridge ' <<<"$(running)"
}

nats_ready() {
    grep -q "Server is ready" "$RUN_DIR/nats.log" 2>/dev/null && grep -q '^nats ' <<<"$(running)"
}

start() {
    local count=4 bus=embedded bridge_count=""
    while (($#)); do
        case "$1" in
        --bridges)
            bridge_count=${2:-}
            shift 2 || true
            ;;
        --bus)
            bus=${2:-}
            shift 2 || true
            ;;
        --ledger)
            LEDGER_KIND=${2:-}
            shift 2 || true
            ;;
        *)
            count=$1
            shift
            ;;
        esac
    done
    if [ "$LEDGER_KIND" != sqlite ] && [ "$LEDGER_KIND" != postgres ]; then
        echo "usage: $0 start [N] [--bus nats] [--ledger postgres]: --ledger is sqlite (the default) or postgres" >&2
        exit 2
    fi
    if ! [[ "$count" =~ ^[0-9]+$ ]] || [ "$count" -lt 1 ] || [ "$count" -gt 100 ]; then
        echo "usage: $0 start [N] [--bus nats], N between 1 and 100" >&2
        exit 2
    fi
    [ -n "$bridge_count" ] || { [ "$LEDGER_KIND" = postgres ] && bridge_count=2 || bridge_count=1; }
    if ! [[ "$bridge_count" =~ ^[1-4]$ ]]; then
        echo "usage: $0 start [N] [--bridges B]: B between 1 and 4" >&2
        exit 2
    fi
    case "$bus" in
    embedded) ;;
    nats) LOCKSTEP_NEED_NATS=1 ;;
    *)
        echo "usage: $0 start [N] [--bus nats]: --bus is embedded (the default) or nats" >&2
        exit 2
        ;;
    esac
    if [ -n "$(running)" ]; then
        echo "a testnet is running already (scripts/testnet.sh status); stop it first" >&2
        exit 1
    fi
    [ "$LEDGER_KIND" != postgres ] || LOCKSTEP_NEED_POSTGRES=1
    source scripts/lib/ensure-packages.sh
    echo "==> cargo build --release --locked (the first build takes a while)"
    cargo build --release --locked --bin lockstep-node --bin lockstep \
        --bin lockstep-offchain --bin lockstep-bridge

    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    : >"$PORTS"
    : >"$PIDS"
    NODE_COUNT=$count

    echo "==> chain spec, $count validator keys, bridge and event system keys, ledger"
    "$NODE" build-spec --validators "$count" --out "$RUN_DIR" >/dev/null
    local bridge_key
    bridge_key=$("$BRIDGE" key generate --out "$RUN_DIR/bridge-key.json")
    if ! [[ "$bridge_key" =~ ^0x[0-9a-f]{64}$ ]]; then
        echo "could not read the bridge's public key" >&2
        exit 1
    fi
    # The event system signs every payment instruction with its own key;
    # the bridge pays only what that key signed.
    local events_key
    events_key=$("$EVENTS" key generate --out "$RUN_DIR/events-key.json")
    if ! [[ "$events_key" =~ ^0x[0-9a-f]{64}$ ]]; then
        echo "could not read the event system's public key" >&2
        exit 1
    fi
    if [ "$LEDGER_KIND" = postgres ]; then
        echo "postgres $(next_free_port 5432)" >>"$PORTS"
        echo "==> PostgreSQL on 127.0.0.1:$(port_of postgres), data in $RUN_DIR/postgres"
        pg_start "$RUN_DIR/postgres" "$(port_of postgres)" "$RUN_DIR/postgres.log"
        LEDGER="postgres://postgres@127.0.0.1:$(port_of postgres)/ledger"
    fi
    # shellcheck disable=SC2086 # one argument per name
    "$BRIDGE" ledger --ledger "$LEDGER" open $DEV_NAMES --currency USD \
        --deposit "$LEDGER_FUNDS" >/dev/null
    local submitter_token reader_token bridge_token
    submitter_token=$("$EVENTS" token create --credentials "$CREDENTIALS" --name submitter \
        --role submitter)
    reader_token=$("$EVENTS" token create --credentials "$CREDENTIALS" --name reader \
        --role reader)
    bridge_token=$("$EVENTS" token create --credentials "$CREDENTIALS" --name bridge \
        --role bridge)
    (umask 077 && printf '%s\n' "$bridge_token" >"$RUN_DIR/bridge.token")
    # The tokens first, so that the checks below can read the reader's; the
    # URLs follow once the processes run.
    (umask 077 && printf 'export LOCKSTEP_TOKEN=%s\nexport LOCKSTEP_READER_TOKEN=%s\nexport LOCKSTEP_BRIDGE_TOKEN=%s\n' \
        "$submitter_token" "$reader_token" "$bridge_token" >"$RUN_DIR/env")

    local i
    for ((i = 0; i < count; i++)); do
        echo "node-$i $(next_free_port $((9944 + i)))" >>"$PORTS"
        echo "p2p-$i $(next_free_port $((30333 + i)))" >>"$PORTS"
    done
    echo "events $(next_free_port 9955)" >>"$PORTS"
    echo "metrics-events $(next_free_port 9615)" >>"$PORTS"
    local bus_args=()
    if [ "$bus" = nats ]; then
        local nats_server
        nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
        echo "nats $(next_free_port 4222)" >>"$PORTS"
        echo "metrics-nats $(next_free_port 8222)" >>"$PORTS"
        echo "==> starting nats-server with JetStream (store $RUN_DIR/nats)"
        launch nats "$RUN_DIR/nats.log" "$nats_server" -a 127.0.0.1 -p "$(port_of nats)" \
            -m "$(port_of metrics-nats)" -js -sd "$RUN_DIR/nats"
        await "nats-server to accept clients" 30 nats_ready
        bus_args=(--bus "nats://127.0.0.1:$(port_of nats)")
    fi

    echo "==> starting $count validators"
    local j bootnodes node_urls=""
    for ((i = 0; i < count; i++)); do
        bootnodes=""
        for ((j = 0; j < count; j++)); do
            [ "$j" = "$i" ] || bootnodes="$bootnodes${bootnodes:+,}/ip4/127.0.0.1/tcp/$(port_of "p2p-$j")"
        done
        launch "node-$i" "$RUN_DIR/node-$i.log" "$NODE" run \
            --chain "$RUN_DIR/chain-spec.json" --key "$RUN_DIR/validator-$i.json" \
            --base-path "$RUN_DIR/node-$i" --rpc-port "$(port_of "node-$i")" \
            --p2p-host 127.0.0.1 --p2p-port "$(port_of "p2p-$i")" \
            ${bootnodes:+--bootnodes "$bootnodes"}
        node_urls="$node_urls${node_urls:+,}http://127.0.0.1:$(port_of "node-$i")"
    done
    await "every node to finalize block 2" 60 all_nodes_at 2

    echo "==> starting the event system and the account bridge"
    local events_url="http://127.0.0.1:$(port_of events)"
    # Quicker re-checks and re-sends than the production defaults, so that
    # the demo's expiring event is cancelled within seconds.
    launch events "$RUN_DIR/events.log" "$EVENTS" run --nodes "$node_urls" \
        --base-path "$RUN_DIR/events" --rpc-port "$(port_of events)" \
        --bridge-key "$bridge_key" --key-file "$RUN_DIR/events-key.json" \
        --chain-spec "$RUN_DIR/chain-spec.json" \
        --prometheus-port "$(port_of metrics-events)" \
        --credentials "$CREDENTIALS" \
        --scan-interval 1s \
        --resend-base 5s --resend-cap 1m "${bus_args[@]}"
    await "the event system to follow the chain" 30 events_following
    local bridges=bridge b
    for ((b = 2; b <= bridge_count; b++)); do bridges+=" bridge-$b"; done
    local name
    for name in $bridges; do
        launch "$name" "$RUN_DIR/$name.log" "$BRIDGE" run --event-system "$events_url" \
            --ledger "$LEDGER" --key "$RUN_DIR/bridge-key.json" --event-system-key "$events_key" \
            --token-file "$RUN_DIR/bridge.token" "${bus_args[@]}"
    done
    await "the bridge to start" 10 bridge_running
    local ledger_at="$PWD/$LEDGER"
    [ "$LEDGER_KIND" != postgres ] || ledger_at=$LEDGER
    printf 'export LOCKSTEP_NODES=%s\nexport LOCKSTEP_RPC=%s\nexport LOCKSTEP_EVENTS=%s\nexport LOCKSTEP_LEDGER=%s\nexport LOCKSTEP_BRIDGE_LEDGER=%s\nexport LOCKSTEP_CHAIN_SPEC=%s\n' \
        "$node_urls" "http://127.0.0.1:$(port_of node-0)" "$events_url" "$ledger_at" \
        "$ledger_at" "$PWD/$RUN_DIR/chain-spec.json" >>"$RUN_DIR/env"

    echo
    echo "Lockstep is running: $count validators, the event system and the account bridge ($bridges on a $LEDGER_KIND ledger)."
    for ((i = 0; i < count; i++)); do
        echo "  node $i:        JSON-RPC http://127.0.0.1:$(port_of "node-$i") (HTTP and WebSocket), p2p /ip4/127.0.0.1/tcp/$(port_of "p2p-$i")"
    done
    echo "  event system:  JSON-RPC $events_url (a token per role in $RUN_DIR/env), metrics http://127.0.0.1:$(port_of metrics-events)/metrics"
    echo "  bridge ledger: $LEDGER (dev accounts alice..heidi hold 1,000,000.00 USD each)"
    if [ "$bus" = nats ]; then
        echo "  message bus:   NATS JetStream nats://127.0.0.1:$(port_of nats), stream LOCKSTEP_INSTRUCTIONS, monitoring http://127.0.0.1:$(port_of metrics-nats)/jsz"
    fi
    echo "  logs:          $RUN_DIR/*.log"
    cat <<NEXT

next:
  scripts/demo.sh          # the method, step by step, with each event's history
  source $RUN_DIR/env      # point the lockstep CLI at this testnet, then:
  $CLI transfer --from alice --to bob --amount 100 --pay bob:alice:2500:USD --wait
  $CLI event list
  $CLI audit
  scripts/testnet.sh status
  scripts/testnet.sh stop
NEXT
}

status() {
    if [ ! -f "$PORTS" ]; then
        echo "no testnet in $RUN_DIR (scripts/testnet.sh start)"
        return 0
    fi
    local alive name port pid
    alive=$(running)
    while read -r name port; do
        case "$name" in p2p-* | metrics-*) continue ;; esac
        pid=$(awk -v n="$name" '$1 == n {print $2}' <<<"$alive")
        if [ -z "$pid" ]; then
            echo "$name: stopped"
            continue
        fi
        case "$name" in
        node-*)
            local height peers
            height=$(finalized "$port")
            peers=$(rpc "$port" system_health | json_number peers)
            echo "$name: running (pid $pid), finalized #${height:-?}, ${peers:-?} peers, RPC http://127.0.0.1:$port"
            ;;
        events)
            local stats
            stats=$(events_rpc event_stats)
            echo "events: running (pid $pid), at #$(json_number lastHeight <<<"$stats"), events registered $(json_number registered <<<"$stats"), pending $(json_number pendingAccount <<<"$stats"), completed $(json_number completed <<<"$stats"), cancelled $(json_number cancelled <<<"$stats"); RPC http://127.0.0.1:$port"
            ;;
        nats)
            local jsz
            jsz=$(curl -s --max-time 2 "http://127.0.0.1:$(port_of metrics-nats)/jsz" 2>/dev/null || true)
            # /jsz is indented JSON: "messages": N, the first for the server.
            echo "nats: running (pid $pid), nats://127.0.0.1:$port, JetStream messages $(sed -n 's/.*"messages": *\([0-9]*\).*/\1/p' <<<"$jsz" | head -n 1), store $RUN_DIR/nats"
            ;;
        esac
    done <"$PORTS"
    local ledger
    ledger=$(sed -n 's/^export LOCKSTEP_BRIDGE_LEDGER=//p' "$RUN_DIR/env" 2>/dev/null)
    for name in $(awk '$1 ~ /^(bridge|postgres)/ {print $1}' "$PIDS" 2>/dev/null); do
        pid=$(awk -v n="$name" '$1 == n {print $2}' <<<"$alive")
        if [ -n "$pid" ]; then
            echo "$name: running (pid $pid), ledger ${ledger:-$LEDGER}"
        else
            echo "$name: stopped, ledger ${ledger:-$LEDGER}"
        fi
    done
}

stop() {
    local alive
    alive=$(running)
    if [ -z "$alive" ]; then
        echo "nothing from the testnet is running"
        return 0
    fi
    # The bridges and the event system first: they talk to the nodes (and
    # the bridges to PostgreSQL, which a SIGINT stops at once: fast
    # shutdown, a checkpoint, no waiting for sessions; and both to the NATS
    # server, stopped last).
    local name pid
    for group in bridge events postgres node- nats; do
        while read -r name pid; do
            [[ "$name" == "$group"* ]] || continue
            if [ "$group" = postgres ]; then
                kill -INT "$pid" 2>/dev/null || true
            else
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done <<<"$alive"
    done
    local deadline=$((SECONDS + 15))
    while [ -n "$(running)" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    while read -r name pid; do
        [ -n "$pid" ] || continue
        echo "$name (pid $pid) did not stop in time: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done <<<"$(running)"
    echo "stopped $(wc -l <<<"$alive") process(es); data and logs stay in $RUN_DIR"
}

case "${1:-}" in
start)
    shift
    start "$@"
    ;;
status) status ;;
stop) stop ;;
*)
    echo "usage: $0 start [N] [--bus nats] [--ledger postgres] [--bridges B] | status | stop" >&2
    exit 2
    ;;
esac
