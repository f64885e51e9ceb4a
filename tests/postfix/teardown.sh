#!/usr/bin/env bash
# Stop the private Postfix instance started by tests/postfix/setup.sh. Safe to call twice.
#
#   bash tests/postfix/teardown.sh [STATEDIR]      (default /tmp/smtpscript-postfix)
#
# The state (Maildirs, maillog, certificates) is kept for inspection; delete the
# directory by hand (or set SMTPSCRIPT_POSTFIX_PURGE=1) to start from scratch.
set -euo pipefail

STATEDIR="${1:-${SMTPSCRIPT_POSTFIX_STATEDIR:-/tmp/smtpscript-postfix}}"
CONF="${STATEDIR}/config"

if [[ -f "${CONF}/main.cf" ]] && command -v postfix >/dev/null 2>&1; then
    if postfix -c "$CONF" status >/dev/null 2>&1; then
        echo "postfix-teardown: stopping the instance in ${CONF}" >&2
        postfix -c "$CONF" stop >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do
            postfix -c "$CONF" status >/dev/null 2>&1 || break
            sleep 0.1
        done
        if postfix -c "$CONF" status >/dev/null 2>&1; then
            postfix -c "$CONF" abort >/dev/null 2>&1 || true
        fi
    else
        echo "postfix-teardown: not running (${CONF})" >&2
    fi
else
    echo "postfix-teardown: nothing to stop (${CONF})" >&2
fi

if [[ "${SMTPSCRIPT_POSTFIX_PURGE:-0}" == 1 && -d "$STATEDIR" ]]; then
    rm -rf -- "$STATEDIR"
fi
exit 0
