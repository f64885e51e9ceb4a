#!/usr/bin/env bash
# Stop the private Postfix instance started by tests/postfix/setup.sh. Safe to call twice.
#
#   bash tests/postfix/teardown.sh [STATEDIR]      (default /tmp/smtpscript-postfix)
#
# The state (Maildirs, maillog, certificates) is kept for inspection; delete the
# directory by hand (or set SMTPSCRIPT_POSTFIX_PURGE=1) to start from scratch.
set -euo pipefail
# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:-${SMTPSCRIPT_POSTFIX_STATEDIR:-/tmp/smtpscript-postfix}}"
CONF="${STATEDIR}/config"
LOG_TAG=postfix-teardown

postfix_teardown
exit 0
