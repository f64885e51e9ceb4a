#!/usr/bin/env bash
# Stop a private Postfix instance started by tests/postfix_audit/setup.sh. Safe to call twice.
#
#   bash tests/postfix_audit/teardown.sh STATEDIR
#
# The state (Maildirs, maillog, certificates) is kept for inspection; set
# SMTPSCRIPT_POSTFIX_PURGE=1 to delete STATEDIR as well.
set -euo pipefail

STATEDIR="${1:?usage: $0 STATEDIR}"
CONF="${STATEDIR}/config"
log() { printf 'postfix-audit-teardown: %s\n' "$*" >&2; }

if [[ -f "${CONF}/main.cf" ]] && command -v postfix >/dev/null 2>&1; then
    if postfix -c "$CONF" status >/dev/null 2>&1; then
        log "stopping the instance in ${CONF}"
        postfix -c "$CONF" stop >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do
            postfix -c "$CONF" status >/dev/null 2>&1 || break
            sleep 0.1
        done
        if postfix -c "$CONF" status >/dev/null 2>&1; then
            postfix -c "$CONF" abort >/dev/null 2>&1 || true
        fi
    else
        log "not running (${CONF})"
    fi
else
    log "nothing to stop (${CONF})"
fi

if [[ "${SMTPSCRIPT_POSTFIX_PURGE:-0}" == 1 && -d "$STATEDIR" ]]; then
    rm -rf -- "$STATEDIR"
fi
exit 0
