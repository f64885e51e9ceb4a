#!/usr/bin/env bash
# Stop the private Dovecot LMTP instance started by tests/dovecot/setup.sh. Safe to call twice.
#
#   bash tests/dovecot/teardown.sh [STATEDIR]      (default /tmp/smtpscript-dovecot)
#
# The state (Maildirs, dovecot.log, configuration) is kept for inspection; delete the
# directory by hand (or set SMTPSCRIPT_DOVECOT_PURGE=1) to start from scratch.
set -euo pipefail

STATEDIR="${1:-${SMTPSCRIPT_DOVECOT_STATEDIR:-/tmp/smtpscript-dovecot}}"
case "$STATEDIR" in
    /*) ;;
    *) STATEDIR="$(pwd)/${STATEDIR}" ;;
esac
STATEDIR="${STATEDIR%/}"
PIDFILE="${STATEDIR}/run/master.pid"

log() { printf 'dovecot-teardown: %s\n' "$*" >&2; }

pid=""
if [[ -r "$PIDFILE" ]]; then
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
fi
# Only the master whose pid file is ours, and only if that pid really is a dovecot master
# started with our configuration (a stale pid file may name an unrelated process by now).
if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- " -c ${STATEDIR}/dovecot.conf "; then
    log "stopping the instance in ${STATEDIR} (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid ${pid} ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
else
    log "not running (${STATEDIR})"
fi
rm -f "${STATEDIR}/lmtp.sock"

if [[ "${SMTPSCRIPT_DOVECOT_PURGE:-0}" == 1 && -d "$STATEDIR" ]]; then
    rm -rf -- "$STATEDIR"
fi
exit 0
