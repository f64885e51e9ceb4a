#!/usr/bin/env bash
# Configure and start a PRIVATE Dovecot LMTP server (RFC 2033) on loopback for the test suite.
#
#   bash tests/dovecot/setup.sh [STATEDIR]      (as root; default /tmp/smtpscript-dovecot)
#
# Idempotent: re-running regenerates the configuration and restarts the instance.
# The system Dovecot (/etc/dovecot, /run/dovecot, /var/lib/dovecot) is never read,
# touched or started: everything lives under STATEDIR and dovecot runs with -c.
#
# Listeners (LMTP only: protocols = lmtp, no IMAP/POP3, no TLS):
#   127.0.0.1:${SMTPSCRIPT_DOVECOT_LMTP_PORT:-10024}   LMTP over TCP
#   STATEDIR/lmtp.sock (mode 0666)                    LMTP over a UNIX socket
#
# Users of domain lmtp.test (userdb passwd-file STATEDIR/users; full addresses as user names):
#   alice, bob   accept mail into Maildirs STATEDIR/mail/lmtp.test/USER/{new,cur,tmp}
#   full         accepted at RCPT, refused after DATA: a quota of 1 byte, so every message
#                gets "552 5.2.2 <full@lmtp.test> Quota exceeded (mailbox for user is full)"
#   anyone else  refused at RCPT: "550 5.1.1 <x@lmtp.test> User doesn't exist: x@lmtp.test"
#
# Messages are stored with CRLF line endings (mail_save_crlf = yes), so a body on disk is
# byte-for-byte the body sent (after dot-unstuffing). Dovecot prepends Return-Path:,
# Delivered-To: and Received: headers. Mail files are owned by the system user "mail";
# the Maildirs are 0755 so the files are 0644 (readable by anyone).
#
# Log (all levels of every Dovecot process): STATEDIR/dovecot.log.
# Writes STATEDIR/env (shell syntax) describing the instance; see tests/dovecot_env.py.
set -euo pipefail

STATEDIR="${1:-${SMTPSCRIPT_DOVECOT_STATEDIR:-/tmp/smtpscript-dovecot}}"
HOST=127.0.0.1
PORT="${SMTPSCRIPT_DOVECOT_LMTP_PORT:-10024}"
DOMAIN=lmtp.test
HOSTNAME_=lmtp.lmtp.test
USERS=(alice bob)
FULL_USER=full
MAIL_USER=mail
INSTANCE=smtpscript-dovecot
READY_TIMEOUT="${SMTPSCRIPT_DOVECOT_READY_TIMEOUT:-30}"

log() { printf 'dovecot-setup: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    if [[ -f "${STATEDIR}/dovecot.log" ]]; then
        log "last lines of ${STATEDIR}/dovecot.log:"
        tail -n 30 "${STATEDIR}/dovecot.log" >&2 || true
    fi
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (Dovecot's master needs root to switch users)"
for tool in dovecot doveconf python3; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: apt-get install dovecot-core dovecot-lmtpd python3"
done
[[ -x /usr/lib/dovecot/lmtp ]] || die "/usr/lib/dovecot/lmtp not found: apt-get install dovecot-lmtpd"
[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "invalid port: $PORT"
case "$STATEDIR" in
    /*) ;;
    *) STATEDIR="$(pwd)/${STATEDIR}" ;;
esac
case "$STATEDIR" in
    *[[:space:]\"\'\$\\:%{}#]*) die "state dir must not contain spaces, quotes, '\$', '\\', ':', '%', braces or '#': $STATEDIR" ;;
esac
STATEDIR="${STATEDIR%/}"

CONF="${STATEDIR}/dovecot.conf"
RUNDIR="${STATEDIR}/run"    # base_dir: master.pid and the internal sockets
STATE="${STATEDIR}/state"   # state_dir (instead of /var/lib/dovecot)
MAILBASE="${STATEDIR}/mail"
USERDB="${STATEDIR}/users"
SOCKET="${STATEDIR}/lmtp.sock"
LOGFILE="${STATEDIR}/dovecot.log"

MAIL_UID="$(id -u "$MAIL_USER")" || die "no '${MAIL_USER}' user"
MAIL_GID="$(id -g "$MAIL_USER")"
id -u dovecot >/dev/null 2>&1 || die "no 'dovecot' user (it comes with dovecot-core)"
id -u dovenull >/dev/null 2>&1 || die "no 'dovenull' user (it comes with dovecot-core)"

# ---------------------------------------------------------------- stop a previous run
master_pid() { # the pid of our running master, if any
    local pid
    [[ -r "${RUNDIR}/master.pid" ]] || return 1
    pid="$(cat "${RUNDIR}/master.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name an unrelated process by now: it must be dovecot -c our config.
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- " -c ${CONF} " || return 1
    printf '%s\n' "$pid"
}
if pid="$(master_pid)"; then
    log "stopping the running instance (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        die "the running instance (pid ${pid}) did not stop"
    fi
fi
rm -f "$SOCKET"

# ---------------------------------------------------------------- directories and users
install -d -m 0755 -o root -g root "$STATEDIR" "$STATE"
install -d -m 0755 -o "$MAIL_UID" -g "$MAIL_GID" "$MAILBASE" "${MAILBASE}/${DOMAIN}"
# 0755 mailbox roots: Dovecot creates files with the root's mode minus x, i.e. 0644.
for user in "${USERS[@]}" "$FULL_USER"; do
    install -d -m 0755 -o "$MAIL_UID" -g "$MAIL_GID" "${MAILBASE}/${DOMAIN}/${user}"
done
touch "$LOGFILE"
chmod 0644 "$LOGFILE"

# passwd-file: user:password:uid:gid:gecos:home:shell:extra fields. No passwords: nobody can
# authenticate (nothing listens for that anyway); the file serves the userdb lookups of LMTP.
{
    echo "# Generated by tests/dovecot/setup.sh -- private smtpscript test instance. Do not edit."
    for user in "${USERS[@]}"; do
        echo "${user}@${DOMAIN}::${MAIL_UID}:${MAIL_GID}::${MAILBASE}/${DOMAIN}/${user}::"
    done
    # 1 byte of quota and no grace: every message is over quota at DATA time.
    echo "${FULL_USER}@${DOMAIN}::${MAIL_UID}:${MAIL_GID}::${MAILBASE}/${DOMAIN}/${FULL_USER}::userdb_quota_rule=*:storage=1B"
} >"$USERDB"
chown root:dovecot "$USERDB"
chmod 0640 "$USERDB"

# ---------------------------------------------------------------- dovecot.conf
cat >"$CONF" <<EOF
# Generated by tests/dovecot/setup.sh -- private smtpscript test instance. Do not edit.
# Self-contained: no !include of the system configuration.
instance_name = ${INSTANCE}
base_dir = ${RUNDIR}
state_dir = ${STATE}
protocols = lmtp
listen = ${HOST}
hostname = ${HOSTNAME_}
postmaster_address = postmaster@${DOMAIN}
ssl = no
shutdown_clients = yes

log_path = ${LOGFILE}
info_log_path = ${LOGFILE}
debug_log_path = ${LOGFILE}
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes

first_valid_uid = ${MAIL_UID}
last_valid_uid = ${MAIL_UID}
first_valid_gid = ${MAIL_GID}
last_valid_gid = ${MAIL_GID}
mail_location = maildir:~
mail_save_crlf = yes
mail_fsync = never
mail_plugins = quota

passdb {
  driver = passwd-file
  args = scheme=PLAIN ${USERDB}
}
userdb {
  driver = passwd-file
  args = ${USERDB}
}

lmtp_rcpt_check_quota = no
lmtp_save_to_detail_mailbox = no
lmtp_proxy = no

plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_grace = 0
  quota_full_tempfail = no
  quota_exceeded_message = Quota exceeded (mailbox for user is full)
}

service lmtp {
  inet_listener lmtp {
    address = ${HOST}
    port = ${PORT}
  }
  unix_listener ${SOCKET} {
    mode = 0666
    user = root
    group = root
  }
}
EOF
chmod 0644 "$CONF"

# ---------------------------------------------------------------- start
log "checking the configuration"
out="$(doveconf -c "$CONF" -n 2>&1 >/dev/null)" || die "doveconf failed: ${out}"
[[ -z "$out" ]] || log "doveconf: ${out}"
log "starting Dovecot (config ${CONF})"
# Not $(...): the master keeps its stderr open for good, a command substitution would hang.
dovecot -c "$CONF" >"${STATEDIR}/start.out" 2>&1 </dev/null \
    || die "dovecot failed to start: $(cat "${STATEDIR}/start.out")"

# ---------------------------------------------------------------- wait for LHLO on both listeners
probe() { # tcp HOST PORT | unix PATH: banner 220, LHLO -> 250, QUIT
    python3 - "$@" <<'PY'
import socket, sys

def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise SystemExit(f"connection closed after {lines!r}")
        lines.append(line.rstrip(b"\r\n").decode("latin-1"))
        if len(line) < 4 or line[3:4] != b"-":
            return lines

kind = sys.argv[1]
if kind == "tcp":
    sock = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
else:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(sys.argv[2])
with sock, sock.makefile("rb") as f:
    banner = read_reply(f)
    if not banner[0].startswith("220"):
        raise SystemExit(f"banner: {banner!r}")
    sock.sendall(b"LHLO setup.lmtp.test\r\n")
    lhlo = read_reply(f)
    if not lhlo[-1].startswith("250"):
        raise SystemExit(f"LHLO: {lhlo!r}")
    sock.sendall(b"QUIT\r\n")
    read_reply(f)
PY
}
wait_ready() { # description probe-args...
    local what=$1 deadline=$((SECONDS + READY_TIMEOUT)) err=""
    shift
    while ((SECONDS < deadline)); do
        if err="$(probe "$@" 2>&1)"; then
            return 0
        fi
        sleep 0.2
    done
    die "no LMTP service on ${what} after ${READY_TIMEOUT}s (last error: ${err##*$'\n'})"
}
wait_ready "${HOST}:${PORT}" tcp "$HOST" "$PORT"
wait_ready "$SOCKET" unix "$SOCKET"

# ---------------------------------------------------------------- env file
cat >"${STATEDIR}/env" <<EOF
SMTPSCRIPT_DOVECOT_STATEDIR=${STATEDIR}
SMTPSCRIPT_DOVECOT_HOST=${HOST}
SMTPSCRIPT_DOVECOT_LMTP_PORT=${PORT}
SMTPSCRIPT_DOVECOT_SOCKET=${SOCKET}
SMTPSCRIPT_DOVECOT_HOSTNAME=${HOSTNAME_}
SMTPSCRIPT_DOVECOT_DOMAIN=${DOMAIN}
SMTPSCRIPT_DOVECOT_USERS="${USERS[*]}"
SMTPSCRIPT_DOVECOT_FULL_USER=${FULL_USER}
SMTPSCRIPT_DOVECOT_MAILDIR=${MAILBASE}
SMTPSCRIPT_DOVECOT_LOG=${LOGFILE}
SMTPSCRIPT_DOVECOT_CONF=${CONF}
EOF
chmod 0644 "${STATEDIR}/env"

log "ready: lmtp ${HOST}:${PORT} and unix:${SOCKET} (pid $(master_pid || echo '?'))"
cat "${STATEDIR}/env"
