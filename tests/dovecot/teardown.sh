#!/usr/bin/env bash
# Stop the private Dovecot LMTP instance started by tests/dovecot/setup.sh. Safe to call twice.
#
#   bash tests/dovecot/teardown.sh [STATEDIR]      (default /tmp/smtpscript-dovecot)
#
# The state (Maildirs, dovecot.log, configuration) is kept for inspection; delete the
# directory by hand (or set SMTPSCRIPT_DOVECOT_PURGE=1) to start from scratch.
set -euo pipefail

# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:-${SMTPSCRIPT_DOVECOT_STATEDIR:-/tmp/smtpscript-dovecot}}"
absolute_statedir
STATEDIR="${STATEDIR%/}"
LOG_TAG=dovecot-teardown

# Only the master whose pid file is ours, and only if that pid really is a dovecot master
# started with our configuration (a stale pid file may name an unrelated process by now).
if pid="$(daemon_pid "${STATEDIR}/run/master.pid" cmdline " -c ${STATEDIR}/dovecot.conf ")"; then
    log "stopping the instance in ${STATEDIR} (pid ${pid})"
    if ! terminate "$pid" 100; then
        log "pid ${pid} ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
else
    log "not running (${STATEDIR})"
fi
rm -f "${STATEDIR}/lmtp.sock"

purge_statedir SMTPSCRIPT_DOVECOT_PURGE
exit 0
