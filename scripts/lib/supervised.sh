# Sourced by scripts/bench.sh and scripts/scale.sh: runs a bench binary that supervises a
# worker (interop/src/bin/bench/interrupt.rs) so that Ctrl-C tears everything down.
#
#   run_supervised NAME BINARY [ARGS...]
#
# The binary runs in the background, so that Ctrl-C reaches the calling script (and this
# trap), not the bench: the trap terminates the bench's supervisor, whose worker then
# stops what it started (by PID) and deletes its namespaces. Returns only once the
# worker is gone; exits 130 when interrupted, else with the bench's status.
run_supervised() {
    local name="$1" bin="$2"
    shift 2
    local pidfile
    pidfile="$(mktemp "/tmp/vg-$name-pid.XXXXXX")"
    export VG_BENCH_PIDFILE="$pidfile"
    "$bin" "$@" &
    local sup=$!
    interrupted=0
    trap 'interrupted=1; kill -TERM "$sup" 2>/dev/null || true' INT TERM HUP

    set +e
    wait "$sup"
    local rc=$?
    if [ "$interrupted" -eq 1 ]; then
        wait "$sup" 2>/dev/null
    fi

    # The worker outlives a killed supervisor while it tears down: wait for it.
    local worker
    worker="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$worker" ]; then
        while supervised_alive "$worker" "$(basename "$bin")"; do sleep 0.2; done
    fi
    rm -f "$pidfile"

    if [ "$interrupted" -eq 1 ]; then
        echo "$name.sh: interrupted" >&2
        exit 130
    fi
    exit "$rc"
}

# Whether PID $1 is a live (not zombie) process whose command is $2.
supervised_alive() {
    local state
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)"
    [ -n "$state" ] && [ "$state" != Z ]
}
