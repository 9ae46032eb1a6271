#!/bin/sh
# gamenode-supervise: keeps the gamenode agent running on a host without systemd.
#
#   PREFIX/bin/gamenode-supervise start|stop|restart|status|run
#
# `start` detaches a supervisor (setsid + nohup, output to PREFIX/log/supervisor.log)
# that survives the SSH session; `run` is that supervisor in the foreground: it runs
# PREFIX/agent/current/bin/python -m agent with PREFIX/etc/agent.env exported,
# appends its output to PREFIX/log/agent.log, and restarts it when it exits, after
# a backoff that doubles from GAMENODE_SUPERVISE_BACKOFF (default 1 s) up to 30 s
# and starts over once the agent has run for 30 s. TERM/INT stop the agent (TERM,
# KILL after 10 s) and the supervisor. Pid files: PREFIX/run/supervisor.pid, agent.pid.
set -u
PREFIX=$(cd "$(dirname "$0")/.." && pwd)
RUN="$PREFIX/run"
SUP_PID="$RUN/supervisor.pid"
AGENT_PID="$RUN/agent.pid"
BACKOFF_MIN=${GAMENODE_SUPERVISE_BACKOFF:-1}
STOP_GRACE=${GAMENODE_SUPERVISE_GRACE:-10}

# alive PID: running, and not a zombie (a zombie answers kill -0 until it is reaped)
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0
    case "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)" in Z*) return 1 ;; esac
    return 0
}
pid_of() { cat "$1" 2>/dev/null || true; }

stop_child() {
    [ -n "${child:-}" ] || return 0
    kill -TERM "$child" 2>/dev/null
    (sleep "$STOP_GRACE"; kill -KILL "$child" 2>/dev/null) &
    killer=$!
    wait "$child" 2>/dev/null
    kill "$killer" 2>/dev/null
    child=
}

on_term() {
    stopping=1
    [ -n "${napper:-}" ] && kill "$napper" 2>/dev/null
    stop_child
    rm -f "$AGENT_PID" "$SUP_PID"
    echo "$(date '+%F %T') supervisor: stopped"
    exit 0
}

run() {
    mkdir -p "$RUN" "$PREFIX/log"
    echo $$ > "$SUP_PID"
    child= napper= stopping=0 delay=$BACKOFF_MIN
    trap on_term TERM INT
    trap '' HUP
    cd "$PREFIX" || exit 1
    while [ "$stopping" = 0 ]; do
        started=$(date +%s)
        (set -a; [ -f "$PREFIX/etc/agent.env" ] && . "$PREFIX/etc/agent.env"; set +a
         exec "$PREFIX/agent/current/bin/python" -m agent) >>"$PREFIX/log/agent.log" 2>&1 </dev/null &
        child=$!
        echo "$child" > "$AGENT_PID"
        echo "$(date '+%F %T') supervisor: agent started (pid $child)"
        wait "$child"
        status=$?
        child=
        rm -f "$AGENT_PID"
        [ $(( $(date +%s) - started )) -ge 30 ] && delay=$BACKOFF_MIN
        echo "$(date '+%F %T') supervisor: agent exited ($status), restart in ${delay}s"
        sleep "$delay" & napper=$!
        wait "$napper"
        napper=
        delay=$(awk -v d="$delay" 'BEGIN { d = d * 2; if (d > 30) d = 30; print d }')
    done
}

start() {
    if alive "$(pid_of "$SUP_PID")"; then return 0; fi
    mkdir -p "$RUN" "$PREFIX/log"
    rm -f "$SUP_PID"
    setsid nohup "$0" run >>"$PREFIX/log/supervisor.log" 2>&1 </dev/null &
    i=0
    while [ ! -s "$SUP_PID" ] && [ "$i" -lt 50 ]; do sleep 0.05; i=$((i + 1)); done
    alive "$(pid_of "$SUP_PID")" || { echo "gamenode-supervise: the supervisor did not start" >&2; return 1; }
}

stop() {
    sup=$(pid_of "$SUP_PID")
    agent=$(pid_of "$AGENT_PID")
    if alive "$sup"; then
        kill -TERM "$sup" 2>/dev/null
        i=0
        while alive "$sup" && [ "$i" -lt $(( (STOP_GRACE + 2) * 10 )) ]; do sleep 0.1; i=$((i + 1)); done
        alive "$sup" && kill -KILL "$sup" 2>/dev/null
    fi
    if alive "$agent"; then kill -KILL "$agent" 2>/dev/null; fi
    rm -f "$SUP_PID" "$AGENT_PID"
    return 0
}

status() {
    alive "$(pid_of "$SUP_PID")" && alive "$(pid_of "$AGENT_PID")"
}

case "${1:-}" in
    run) run ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    *) echo "usage: $0 start|stop|restart|status|run" >&2; exit 2 ;;
esac
