#!/usr/bin/env bash
# Stop a private Postfix instance started by tests/postfix_audit/setup.sh. Safe to call twice.
#
#   bash tests/postfix_audit/teardown.sh STATEDIR
#
# The state (Maildirs, maillog, certificates) is kept for inspection; set
# SMTPSCRIPT_POSTFIX_PURGE=1 to delete STATEDIR as well.
set -euo pipefail
# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:?usage: $0 STATEDIR}"
CONF="${STATEDIR}/config"
LOG_TAG=postfix-audit-teardown

postfix_teardown
exit 0
