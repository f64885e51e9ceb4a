#!/usr/bin/env bash
# Stop the private Exim started by tests/exim/setup.sh. Safe to call twice.
#
#   bash tests/exim/teardown.sh [STATEDIR]      (default /tmp/smtpscript-exim)
#
# Only the daemon named by STATEDIR/exim.pid is signalled, and only when its executable is
# STATEDIR/root/usr/sbin/exim4; SMTP sessions it had forked end with it (SIGTERM to the
# process group would reach no one else: they are its children). The state (the extracted
# root, the downloaded .debs, logs, certificates) is kept; SMTPSCRIPT_EXIM_PURGE=1 deletes
# STATEDIR as well.
set -euo pipefail

# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:-${SMTPSCRIPT_EXIM_STATEDIR:-/tmp/smtpscript-exim}}"
EXIM="${STATEDIR}/root/usr/sbin/exim4"
PIDFILE="${STATEDIR}/exim.pid"
LOG_TAG=exim-teardown

# Our exim4 processes: the daemon and any SMTP session it forked (same executable).
ours() {
    local proc exe
    for proc in /proc/[0-9]*; do
        exe="$(readlink "${proc}/exe" 2>/dev/null)" || continue
        [[ "$exe" == "$EXIM" ]] && printf '%s\n' "${proc#/proc/}"
    done
    return 0
}

if pid="$(daemon_pid "$PIDFILE" exe "$EXIM")"; then
    log "stopping the daemon (pid ${pid})"
    terminate "$pid" 50 || true
else
    log "no running daemon for ${STATEDIR}"
fi
rm -f "$PIDFILE"
# SMTP sessions still open (a test that hung) run the same binary: end them by pid.
for child in $(ours); do
    log "stopping leftover exim4 process ${child}"
    kill -TERM "$child" 2>/dev/null || true
done
sleep 0.2
for child in $(ours); do
    kill -KILL "$child" 2>/dev/null || true
done

purge_statedir SMTPSCRIPT_EXIM_PURGE
exit 0
