#!/usr/bin/env bash
# Configure and start a PRIVATE Postfix instance on loopback for the test suite.
#
#   bash tests/postfix/setup.sh [STATEDIR]      (as root; default /tmp/smtpscript-postfix)
#
# Idempotent: re-running regenerates the configuration and restarts the instance.
# The system Postfix (config in /etc/postfix, port 25) is never touched or started.
#
# Ports (127.0.0.1 only), overridable through the environment:
#   SMTPSCRIPT_POSTFIX_PORT            10025  SMTP, STARTTLS offered, AUTH only after TLS
#   SMTPSCRIPT_POSTFIX_SMTPS_PORT      10465  implicit TLS (wrapper mode), AUTH
#   SMTPSCRIPT_POSTFIX_SUBMISSION_PORT 10587  submission: STARTTLS required, AUTH required to relay
#   SMTPSCRIPT_POSTFIX_PROXY_PORT      10026  like 10025, but every connection must start with a
#                                             HAProxy PROXY header (v1 text or v2 binary): the
#                                             banner comes only after it, and the address it claims
#                                             is the client (maillog "connect from", Received:).
#                                             No reverse DNS lookup (client name is "unknown").
#   SMTPSCRIPT_POSTFIX_XCLIENT_PORT    10027  like 10025, plus XCLIENT for 127.0.0.1
#                                             (smtpd_authorized_xclient_hosts); the main port
#                                             does not offer XCLIENT.
#
# Extensions on every port: PIPELINING, SIZE, ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8
# (smtputf8_enable = yes), CHUNKING (BDAT; stored with LF line endings, no dot-stuffing).
#
# Loopback clients are outsiders (mynetworks excludes 127.0.0.1): relaying is refused with
# "554 5.7.1 <x@example.net>: Relay access denied" unless authenticated. Mail to
# postfix.test (alice, bob) is delivered into Maildirs under STATEDIR/mail; mail to any
# other domain is accepted only after AUTH and is then DISCARDED (never leaves the host).
# Virtual alias (virtual_alias_maps): jörg@postfix.test (a UTF-8 local part, any case) ->
# alice@postfix.test. RFC 6531 wants MAIL FROM ... SMTPUTF8 before a UTF-8 address; Postfix
# (strict_smtputf8 = no, the default) accepts one without it too.
# Maildir files: STATEDIR/mail/postfix.test/USER/new/ (LF line endings).
#
# The log of every daemon (INFO and up, including "connect from NAME[ADDR]" with the address a
# PROXY header or XCLIENT claimed) goes to STATEDIR/maillog through postlogd (maillog_file),
# not to syslog.
#
# Writes STATEDIR/env (shell syntax) describing the instance; see tests/postfix_env.py.
set -euo pipefail

STATEDIR="${1:-${SMTPSCRIPT_POSTFIX_STATEDIR:-/tmp/smtpscript-postfix}}"
HOST=127.0.0.1
PORT="${SMTPSCRIPT_POSTFIX_PORT:-10025}"
SMTPS_PORT="${SMTPSCRIPT_POSTFIX_SMTPS_PORT:-10465}"
SUBMISSION_PORT="${SMTPSCRIPT_POSTFIX_SUBMISSION_PORT:-10587}"
PROXY_PORT="${SMTPSCRIPT_POSTFIX_PROXY_PORT:-10026}"
XCLIENT_PORT="${SMTPSCRIPT_POSTFIX_XCLIENT_PORT:-10027}"
DOMAIN=postfix.test
MYHOSTNAME=mx.postfix.test
SASL_USER=alice
SASL_PASSWORD=postfix-alice-pw
MECH_LIST="PLAIN LOGIN CRAM-MD5"
READY_TIMEOUT="${SMTPSCRIPT_POSTFIX_READY_TIMEOUT:-30}"

log() { printf 'postfix-setup: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    if [[ -f "${STATEDIR}/maillog" ]]; then
        log "last lines of ${STATEDIR}/maillog:"
        tail -n 30 "${STATEDIR}/maillog" >&2 || true
    fi
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (Postfix needs to start as root)"
for tool in postfix postconf openssl saslpasswd2; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: apt-get install postfix sasl2-bin libsasl2-modules openssl"
done
ALL_PORTS=("$PORT" "$SMTPS_PORT" "$SUBMISSION_PORT" "$PROXY_PORT" "$XCLIENT_PORT")
for port in "${ALL_PORTS[@]}"; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "invalid port: $port"
done
[[ $(printf '%s\n' "${ALL_PORTS[@]}" | sort -u | wc -l) -eq ${#ALL_PORTS[@]} ]] \
    || die "the ports must all differ: ${ALL_PORTS[*]}"
case "$STATEDIR" in
    /*) ;;
    *) STATEDIR="$(pwd)/${STATEDIR}" ;;
esac
case "$STATEDIR" in
    *[[:space:],=\$]*) die "state dir must not contain spaces, commas, '=' or '\$': $STATEDIR" ;;
esac

CONF="${STATEDIR}/config"
# Debian's Postfix reads smtpd.conf from $config_directory/sasl/ whatever cyrus_sasl_config_path
# says, so the SASL config lives there (and cyrus_sasl_config_path points at it too).
SASLDIR="${CONF}/sasl"
TLSDIR="${STATEDIR}/tls"
MAILBASE="${STATEDIR}/mail"
QUEUE="${STATEDIR}/queue"
DATA="${STATEDIR}/data"
MAILLOG="${STATEDIR}/maillog"
SASLDB="${STATEDIR}/sasldb2"
CA="${STATEDIR}/ca.pem"

MAIL_UID="$(id -u postfix)" || die "no 'postfix' user"
MAIL_GID="$(id -g postfix)"

# ---------------------------------------------------------------- stop a previous run
if [[ -f "${CONF}/main.cf" ]] && postfix -c "$CONF" status >/dev/null 2>&1; then
    log "stopping the running instance (${CONF})"
    postfix -c "$CONF" stop >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        postfix -c "$CONF" status >/dev/null 2>&1 || break
        sleep 0.1
    done
fi

# ---------------------------------------------------------------- directories
install -d -m 0755 -o root -g root "$STATEDIR" "$CONF" "$QUEUE"
install -d -m 0750 -o root -g postfix "$SASLDIR"
install -d -m 0700 -o root -g root "$TLSDIR"
install -d -m 0700 -o postfix -g postfix "$DATA"
install -d -m 0755 -o postfix -g postfix "$MAILBASE"
touch "$MAILLOG"
chmod 0644 "$MAILLOG"

# ---------------------------------------------------------------- TLS: private CA + server cert
# A tiny CA signs the server certificate: a lone self-signed cert with CA:TRUE used as a
# server certificate is rejected by strict verifiers (Python >= 3.13 VERIFY_X509_STRICT).
if [[ ! -s "${TLSDIR}/server.pem" || ! -s "${TLSDIR}/server.key" || ! -s "${TLSDIR}/ca.pem" ]]; then
    log "creating the test CA and the server certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -keyout "${TLSDIR}/ca.key" -out "${TLSDIR}/ca.pem" \
        -subj "/O=smtpscript tests/CN=smtpscript test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" >/dev/null 2>&1 || die "openssl: CA creation failed"
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
        -keyout "${TLSDIR}/server.key" -out "${TLSDIR}/server.csr" \
        -subj "/O=smtpscript tests/CN=${MYHOSTNAME}" >/dev/null 2>&1 || die "openssl: CSR failed"
    cat >"${TLSDIR}/server.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:${MYHOSTNAME},DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl x509 -req -in "${TLSDIR}/server.csr" -days 3650 -sha256 \
        -CA "${TLSDIR}/ca.pem" -CAkey "${TLSDIR}/ca.key" -CAcreateserial \
        -extfile "${TLSDIR}/server.ext" -out "${TLSDIR}/server.pem" >/dev/null 2>&1 \
        || die "openssl: signing the server certificate failed"
    chmod 0600 "${TLSDIR}"/*.key
fi
install -m 0644 "${TLSDIR}/ca.pem" "$CA"

# ---------------------------------------------------------------- Cyrus SASL (sasldb)
rm -f "$SASLDB"
printf '%s' "$SASL_PASSWORD" | saslpasswd2 -p -c -f "$SASLDB" -u "$DOMAIN" "$SASL_USER" \
    || die "saslpasswd2 failed"
chown root:postfix "$SASLDB"
chmod 0640 "$SASLDB"
cat >"${SASLDIR}/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: ${SASLDB}
mech_list: ${MECH_LIST}
EOF
chown root:postfix "${SASLDIR}/smtpd.conf"
chmod 0640 "${SASLDIR}/smtpd.conf"

# ---------------------------------------------------------------- virtual mailboxes
cat >"${CONF}/vmailbox" <<EOF
alice@${DOMAIN}    ${DOMAIN}/alice/
bob@${DOMAIN}      ${DOMAIN}/bob/
EOF
# UTF-8 keys work in texthash (like hash/lmdb) tables when smtputf8_enable = yes; Postfix
# case-folds them itself (casefold, not just ASCII lower-case).
cat >"${CONF}/virtual" <<EOF
jörg@${DOMAIN}     alice@${DOMAIN}
EOF

# ---------------------------------------------------------------- main.cf
cat >"${CONF}/main.cf" <<EOF
# Generated by tests/postfix/setup.sh -- private smtpscript test instance. Do not edit.
compatibility_level = 3.6
queue_directory = ${QUEUE}
data_directory = ${DATA}
mail_owner = postfix
syslog_name = postfix-smtpscript
maillog_file = ${MAILLOG}
maillog_file_prefixes = ${STATEDIR}
readme_directory = no
biff = no

myhostname = ${MYHOSTNAME}
mydomain = ${DOMAIN}
myorigin = \$myhostname
inet_interfaces = ${HOST}
inet_protocols = ipv4
# 127.0.0.1 is deliberately NOT in mynetworks: loopback clients are outsiders.
mynetworks = 192.0.2.1/32
append_dot_mydomain = no

# No local delivery; postfix.test is a virtual mailbox domain.
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = ${DOMAIN}
virtual_mailbox_base = ${MAILBASE}
virtual_mailbox_maps = texthash:${CONF}/vmailbox
virtual_alias_maps = texthash:${CONF}/virtual
virtual_uid_maps = static:${MAIL_UID}
virtual_gid_maps = static:${MAIL_GID}
virtual_minimum_uid = ${MAIL_UID}

# Nothing ever leaves the host: mail for other domains (accepted only after AUTH) is discarded.
default_transport = discard:smtpscript-test-no-outbound-mail
relay_transport = discard:smtpscript-test-no-outbound-mail

smtpd_banner = \$myhostname ESMTP Postfix
# Explicit although they are the defaults here: the protocol-extension tests rely on SMTPUTF8,
# DSN and CHUNKING being advertised on every port.
smtputf8_enable = yes
smtpd_discard_ehlo_keywords =
smtpd_helo_required = no
smtpd_delay_reject = yes
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_recipient_restrictions =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
relay_domains_reject_code = 554
unknown_virtual_mailbox_reject_code = 550

smtpd_tls_security_level = may
smtpd_tls_chain_files = ${TLSDIR}/server.key, ${TLSDIR}/server.pem
smtpd_tls_loglevel = 1
smtpd_tls_received_header = no
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache
smtp_tls_security_level = none

smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = ${SASLDIR}
smtpd_sasl_local_domain = ${DOMAIN}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_tls_auth_only = yes
broken_sasl_auth_clients = no
EOF

# ---------------------------------------------------------------- master.cf (no chroot, no smtp client)
cat >"${CONF}/master.cf" <<EOF
# Generated by tests/postfix/setup.sh -- private smtpscript test instance. Do not edit.
# service type  private unpriv  chroot  wakeup  maxproc command + args
${HOST}:${PORT} inet n - n - - smtpd
  -o syslog_name=postfix-smtpscript/smtp
${HOST}:${SMTPS_PORT} inet n - n - - smtpd
  -o syslog_name=postfix-smtpscript/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
${HOST}:${SUBMISSION_PORT} inet n - n - - smtpd
  -o syslog_name=postfix-smtpscript/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
${HOST}:${PROXY_PORT} inet n - n - - smtpd
  -o syslog_name=postfix-smtpscript/proxy
  -o smtpd_upstream_proxy_protocol=haproxy
  -o smtpd_upstream_proxy_timeout=5s
  -o smtpd_peername_lookup=no
${HOST}:${XCLIENT_PORT} inet n - n - - smtpd
  -o syslog_name=postfix-smtpscript/xclient
  -o smtpd_authorized_xclient_hosts=${HOST}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# ---------------------------------------------------------------- start
log "checking the configuration"
out="$(postfix -c "$CONF" check 2>&1)" || die "postfix check failed: ${out}"
log "starting Postfix (config ${CONF})"
out="$(postfix -c "$CONF" start 2>&1)" || die "postfix start failed: ${out}"

# ---------------------------------------------------------------- wait for the banners
wait_banner() { # port [proxy-line]: wait for "220 " on a plain connection (after that PROXY header)
    local port=$1 proxy=${2:-} deadline=$((SECONDS + READY_TIMEOUT)) line=""
    while ((SECONDS < deadline)); do
        # The braces matter: "exec 3<>... 2>/dev/null" alone would send the script's stderr to
        # /dev/null for good (exec without a command keeps its redirections).
        if { exec 3<>"/dev/tcp/${HOST}/${port}"; } 2>/dev/null; then
            line=""
            if [[ -n "$proxy" ]]; then
                printf '%s\r\n' "$proxy" >&3 2>/dev/null || true
            fi
            IFS= read -r -t 5 line <&3 || true
            printf 'QUIT\r\n' >&3 2>/dev/null || true
            exec 3<&- 3>&- || true
            if [[ "$line" == 220* ]]; then
                return 0
            fi
        fi
        sleep 0.2
    done
    die "no '220' banner on ${HOST}:${port} after ${READY_TIMEOUT}s (last line: '${line%$'\r'}')"
}
wait_banner "$PORT"
wait_banner "$SUBMISSION_PORT"
wait_banner "$XCLIENT_PORT"
wait_banner "$PROXY_PORT" "PROXY TCP4 ${HOST} ${HOST} 1 ${PROXY_PORT}"

# The smtps port sends its banner only inside TLS: check the handshake and the banner.
smtps_banner="$(printf 'QUIT\r\n' | timeout 15 openssl s_client -connect "${HOST}:${SMTPS_PORT}" \
    -CAfile "$CA" -verify_return_error -verify_hostname "$MYHOSTNAME" -quiet 2>/dev/null || true)"
[[ "$smtps_banner" == 220* ]] || die "no TLS banner on the smtps port ${HOST}:${SMTPS_PORT}"

# ---------------------------------------------------------------- env file
cat >"${STATEDIR}/env" <<EOF
SMTPSCRIPT_POSTFIX_STATEDIR=${STATEDIR}
SMTPSCRIPT_POSTFIX_HOST=${HOST}
SMTPSCRIPT_POSTFIX_PORT=${PORT}
SMTPSCRIPT_POSTFIX_SMTPS_PORT=${SMTPS_PORT}
SMTPSCRIPT_POSTFIX_SUBMISSION_PORT=${SUBMISSION_PORT}
SMTPSCRIPT_POSTFIX_PROXY_PORT=${PROXY_PORT}
SMTPSCRIPT_POSTFIX_XCLIENT_PORT=${XCLIENT_PORT}
SMTPSCRIPT_POSTFIX_MAILLOG=${MAILLOG}
SMTPSCRIPT_POSTFIX_MAILDIR=${MAILBASE}
SMTPSCRIPT_POSTFIX_CA=${CA}
SMTPSCRIPT_POSTFIX_DOMAIN=${DOMAIN}
SMTPSCRIPT_POSTFIX_USER=${SASL_USER}
SMTPSCRIPT_POSTFIX_PASSWORD=${SASL_PASSWORD}
SMTPSCRIPT_POSTFIX_MECHS="${MECH_LIST}"
EOF
chmod 0644 "${STATEDIR}/env"

log "ready: smtp ${HOST}:${PORT}, smtps ${HOST}:${SMTPS_PORT}, submission ${HOST}:${SUBMISSION_PORT}," \
    "proxy ${HOST}:${PROXY_PORT}, xclient ${HOST}:${XCLIENT_PORT}"
cat "${STATEDIR}/env"
