#!/usr/bin/env bash
# Start a PRIVATE Exim 4 on loopback, the second real MTA the audit library is checked against.
#
#   bash tests/exim/setup.sh [STATEDIR]      (as root; default /tmp/smtpscript-exim)
#
# Debian's exim4 packages conflict with postfix, so Exim is NOT installed: the three .debs
# (exim4-base, exim4-config, exim4-daemon-light) are fetched with `apt-get download` into
# STATEDIR/debs (or $SMTPSCRIPT_EXIM_DEBS; kept, so later runs need no network) and unpacked
# with `dpkg-deb -x` into STATEDIR/root. The binary runs from there with
# `exim4 -C STATEDIR/exim.conf -bd -oX PORT -oP STATEDIR/exim.pid`. It needs:
#   - its shared libraries (exim4-daemon-light's Depends; on Debian 12 only libidn12 is not
#     already there with postfix: .ci/run installs it);
#   - the user "Debian-exim", compiled into the binary and looked up before the configuration
#     is read ("failed to find uid for user name"): created here (system user, no home) if
#     missing.
# Because the configuration is not the compiled-in one, Exim gives up root at once and the
# daemon runs as Debian-exim (enough: the port is unprivileged and nothing is delivered), so
# the spool, the log directory and the TLS key belong to Debian-exim.
#
# Idempotent: re-running rewrites the configuration and restarts the daemon. Stop it with
# tests/exim/teardown.sh STATEDIR.
#
# Port (127.0.0.1 only): SMTPSCRIPT_EXIM_PORT, default 10325. STARTTLS offered with a
# certificate for mx.exim.test (SAN localhost, 127.0.0.1) signed by STATEDIR/ca.pem; no AUTH.
# Relay is refused for everybody on loopback (127.0.0.1 is not in relay_from_hosts):
# "550 relay not permitted". exim.test (and mx.exim.test) has postmaster and alice; anyone
# else there is "550 Unrouteable address". Nothing is stored or sent: the DATA ACL discards
# every accepted message (mainlog: "=> blackhole (DATA ACL discarded recipients)"),
# queue_only stops any delivery attempt, the only router is a :blackhole: redirect and there
# is no smtp transport.
# Log: STATEDIR/log/mainlog (and rejectlog, paniclog).
#
# Writes STATEDIR/env (shell syntax, SMTPSCRIPT_AUDIT_* keys); see tests/audit_servers.py.
set -euo pipefail

# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:-${SMTPSCRIPT_EXIM_STATEDIR:-/tmp/smtpscript-exim}}"
HOST=127.0.0.1
PORT="${SMTPSCRIPT_EXIM_PORT:-10325}"
DOMAIN=exim.test
MYHOSTNAME="mx.${DOMAIN}"
EXIM_USER=Debian-exim
PACKAGES=(exim4-base exim4-config exim4-daemon-light)
READY_TIMEOUT="${SMTPSCRIPT_EXIM_READY_TIMEOUT:-30}"
LOG_TAG=exim-setup
DIE_LOGS=("${STATEDIR}/log/paniclog" "${STATEDIR}/log/mainlog")
DIE_LINES=20

require_root
require_tools "" apt-get dpkg-deb openssl ldd
check_ports "$PORT"
absolute_statedir ":;\$" "':', ';' or '\$'"

ROOT="${STATEDIR}/root"
DEBS="${SMTPSCRIPT_EXIM_DEBS:-${STATEDIR}/debs}"
EXIM="${ROOT}/usr/sbin/exim4"
CONF="${STATEDIR}/exim.conf"
SPOOL="${STATEDIR}/spool"
LOGDIR="${STATEDIR}/log"
TLSDIR="${STATEDIR}/tls"
PIDFILE="${STATEDIR}/exim.pid"
CA="${STATEDIR}/ca.pem"

# ---------------------------------------------------------------- stop a previous run
# Only a process whose executable is OUR extracted exim4 is ever signalled.
if pid="$(daemon_pid "$PIDFILE" exe "$EXIM")"; then
    log "stopping the running daemon (pid ${pid})"
    terminate "$pid" 50 || die "the previous daemon (pid ${pid}) did not stop"
fi
rm -f "$PIDFILE"

install -d -m 0755 -o root -g root "$STATEDIR"

# ---------------------------------------------------------------- the binary (private root)
have_debs() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        compgen -G "${DEBS}/${pkg}_*.deb" >/dev/null || return 1
    done
}
if ! have_debs; then
    log "downloading ${PACKAGES[*]} into ${DEBS} (apt-get download; nothing is installed)"
    install -d -m 0755 "$DEBS"
    # APT::Sandbox::User=root: the download dir need not be writable by _apt.
    if ! (cd "$DEBS" && apt-get -qq -o APT::Sandbox::User=root download "${PACKAGES[@]}") >&2; then
        log "apt-get download failed; updating the package lists and retrying"
        apt-get -qq -o DPkg::Lock::Timeout=600 update >&2 || die "apt-get update failed"
        (cd "$DEBS" && apt-get -qq -o APT::Sandbox::User=root download "${PACKAGES[@]}") >&2 \
            || die "apt-get download ${PACKAGES[*]} failed"
    fi
fi
# Extract when the root is missing or was built from other .debs (a newer download).
# shellcheck disable=SC2012 # plain .deb file names
stamp="$(cd "$DEBS" && ls -1 -- *.deb | sort | tr '\n' ' ')"
if [[ ! -x "$EXIM" || "$(cat "${ROOT}/.smtpscript-debs" 2>/dev/null)" != "$stamp" ]]; then
    log "extracting into ${ROOT}"
    rm -rf -- "$ROOT"
    install -d -m 0755 "$ROOT"
    for pkg in "${PACKAGES[@]}"; do
        deb="$(compgen -G "${DEBS}/${pkg}_*.deb" | sort -V | tail -n 1)"
        dpkg-deb -x "$deb" "$ROOT" || die "dpkg-deb -x ${deb} failed"
    done
    printf '%s' "$stamp" >"${ROOT}/.smtpscript-debs"
fi
[[ -x "$EXIM" ]] || die "no ${EXIM} after extraction"

missing_libs="$(ldd "$EXIM" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')"
if [[ -n "$missing_libs" ]]; then
    daemon_deb="$(compgen -G "${DEBS}/exim4-daemon-light_*.deb" | sort -V | tail -n 1)"
    die "shared libraries missing for ${EXIM}: ${missing_libs}; install the Depends of" \
        "exim4-daemon-light with apt-get (e.g. libidn12): $(dpkg-deb -f "$daemon_deb" Depends)"
fi

# ---------------------------------------------------------------- the compiled-in user
if ! getent passwd "$EXIM_USER" >/dev/null; then
    log "creating the system user ${EXIM_USER} (no home, no login)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$EXIM_USER" || die "useradd ${EXIM_USER} failed"
fi

# ---------------------------------------------------------------- directories
install -d -m 0750 -o "$EXIM_USER" -g "$EXIM_USER" "$SPOOL" "$LOGDIR"
install -d -m 0750 -o root -g "$EXIM_USER" "$TLSDIR"

# ---------------------------------------------------------------- TLS: private CA + server cert
server_certificate "$TLSDIR" "$MYHOSTNAME" exim 825 "$CA"
chown root:root "${TLSDIR}/ca.key"
chmod 0600 "${TLSDIR}/ca.key"
# The daemon runs as Debian-exim and reads the key itself.
chown root:"$EXIM_USER" "${TLSDIR}/server.key" "${TLSDIR}/server.pem"
chmod 0640 "${TLSDIR}/server.key" "${TLSDIR}/server.pem"

# ---------------------------------------------------------------- configuration
# Exim insists that its configuration belongs to root and is not writable by others.
cat >"$CONF" <<EOF
# Generated by tests/exim/setup.sh -- private smtpscript test instance. Do not edit.
keep_environment =
primary_hostname = ${MYHOSTNAME}
# The domain and the host name (@): postmaster@ each is accepted (RFC 5321 4.5.1), and so is
# <postmaster> alone (qualified with qualify_domain). Address literals are refused outright
# (allow_domain_literals is false by default): "501 <x@[127.0.0.1]>: domain literals not
# allowed".
domainlist local_domains = ${DOMAIN} : @
qualify_domain = ${DOMAIN}
# Loopback is NOT here: the tests are outsiders and relaying is refused.
hostlist relay_from_hosts = 192.0.2.1

spool_directory = ${SPOOL}
log_file_path = ${LOGDIR}/%slog
pid_file_path = ${PIDFILE}
exim_user = ${EXIM_USER}
exim_group = ${EXIM_USER}
local_interfaces = <; ${HOST}
daemon_smtp_ports = ${PORT}
# No DNS for the client, no ident callback, nothing delivered (no queue runner is started).
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
queue_only = true
log_selector = +smtp_protocol_error +smtp_syntax_error +smtp_no_mail

tls_advertise_hosts = *
tls_certificate = ${TLSDIR}/server.pem
tls_privatekey = ${TLSDIR}/server.key

acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data

begin acl

acl_check_rcpt:
  accept  hosts = :
  deny    message = restricted characters in address
          local_parts = ^[.] : ^.*[@%!/|]
  accept  hosts = +relay_from_hosts
  require message = relay not permitted
          domains = +local_domains
  require verify = recipient
  accept

acl_check_data:
  discard log_message = discarded by the smtpscript test config

begin routers

local_users:
  driver = redirect
  domains = +local_domains
  local_parts = postmaster : alice
  data = :blackhole:

begin transports

begin retry

begin rewrite

begin authenticators
EOF
chown root:root "$CONF"
chmod 0644 "$CONF"

out="$("$EXIM" -C "$CONF" -bV 2>&1)" || die "exim -bV failed: ${out}"
EXIM_VERSION="$(printf '%s\n' "$out" | sed -n 's/^Exim version \([^ ]*\).*/\1/p' | head -n 1)"

# ---------------------------------------------------------------- start
log "starting Exim ${EXIM_VERSION} on ${HOST}:${PORT} (config ${CONF})"
out="$("$EXIM" -C "$CONF" -bd -oX "$PORT" -oP "$PIDFILE" 2>&1)" || die "exim -bd failed: ${out}"

wait_banner "$HOST" "$PORT"
pid="$(daemon_pid "$PIDFILE" exe "$EXIM")" || die "no pid file ${PIDFILE} for the running daemon"

# ---------------------------------------------------------------- env file
write_env SMTPSCRIPT_AUDIT_ \
    "KIND=exim" \
    "PROFILE=exim" \
    "STATEDIR=${STATEDIR}" \
    "HOST=${HOST}" \
    "PORT=${PORT}" \
    "SMTPS_PORT=" \
    "HOSTNAME=${MYHOSTNAME}" \
    "DOMAIN=${DOMAIN}" \
    "CA=${CA}" \
    "USER=" \
    "PASSWORD=" \
    "MAILLOG=${LOGDIR}/mainlog" \
    "MAILDIR=" \
    "VERSION=${EXIM_VERSION}"
ready "Exim ${EXIM_VERSION} (pid ${pid}) smtp ${HOST}:${PORT}"
