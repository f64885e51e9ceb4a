#!/usr/bin/env bash
# Configure and start one of the two PRIVATE Postfix instances that the audit library
# (scenarios/, issue 11) is verified against:
#
#   bash tests/postfix_audit/setup.sh STATEDIR hardened|weak        (as root)
#
#   e.g. bash tests/postfix_audit/setup.sh /tmp/smtpscript-postfix-hardened hardened
#        bash tests/postfix_audit/setup.sh /tmp/smtpscript-postfix-weak weak
#
# Idempotent: re-running regenerates the configuration and restarts the instance. Each
# instance is a separate `postfix -c STATEDIR/config` with its own queue_directory and
# data_directory under STATEDIR; the system Postfix (/etc/postfix, port 25) and the
# developer instance of tests/postfix/setup.sh (ports 10025-10027, 10465, 10587) are never
# touched. Stop with tests/postfix_audit/teardown.sh STATEDIR.
#
# Ports (127.0.0.1 only), overridable through the environment:
#   hardened  SMTPSCRIPT_POSTFIX_HARDENED_PORT        10125  SMTP, STARTTLS offered
#             SMTPSCRIPT_POSTFIX_HARDENED_SMTPS_PORT  10165  implicit TLS (wrapper mode)
#   weak      SMTPSCRIPT_POSTFIX_WEAK_PORT            10225  plain SMTP, no STARTTLS
#
# Both: mail for DOMAIN (hardened.test / weak.test: postmaster, alice) is delivered into
# Maildirs under STATEDIR/mail/DOMAIN/USER/new/ (LF line endings); postmaster without a
# domain, postmaster@MYHOSTNAME and postmaster@[127.0.0.1] are aliases of
# postmaster@DOMAIN. Unknown users of DOMAIN: "550 5.1.1 ... User unknown in virtual
# mailbox table". Every other domain goes to a discard: transport, so an accepted relay
# attempt is DISCARDED (maillog: "status=sent (smtpscript-test-no-outbound-mail)") and
# nothing ever leaves the host (master.cf has no smtp client at all).
#
# hardened (a sane MTA; every audit check should pass):
#   mynetworks = 192.0.2.1/32 (loopback is an outsider), relay only after SASL AUTH
#   ("554 5.7.1 <x@example.net>: Relay access denied"), disable_vrfy_command = yes
#   ("502 5.5.1 VRFY command is disabled"), no EXPN (Postfix has none: 502 5.5.2),
#   TLS 1.2+ with a certificate for mx.hardened.test signed by STATEDIR/ca.pem,
#   Cyrus SASL (sasldb) offered only after STARTTLS (smtpd_tls_auth_only = yes),
#   smtpd_forbid_bare_newline = normalize, smtpd_helo_required = yes,
#   smtpd_forbid_unauth_pipelining = yes, banner "mx.hardened.test ESMTP" (no software
#   name or version), message_size_limit = 10485760.
# weak (deliberately misconfigured; the audit must flag it):
#   mynetworks = 127.0.0.0/8 (loopback trusted: it relays for us; the mail is discarded),
#   VRFY enabled (252 for a known user, 550 5.1.1 for an unknown one), no STARTTLS,
#   SASL PLAIN/LOGIN offered and accepted in the clear (smtpd_tls_auth_only = no),
#   smtpd_forbid_bare_newline = no (stock Debian 12: <LF>.<CR><LF> ends DATA, so SMTP
#   smuggling works), smtpd_helo_required = no, banner "mx.weak.test ESMTP Postfix 3.7.11"
#   (mail_version), message_size_limit = 0 (no limit).
#
# The log of every daemon goes to STATEDIR/maillog (postlogd, maillog_file), not syslog.
# Writes STATEDIR/env (shell syntax, SMTPSCRIPT_AUDIT_* keys); see tests/audit_servers.py.
set -euo pipefail

STATEDIR="${1:-}"
PROFILE="${2:-}"
HOST=127.0.0.1
READY_TIMEOUT="${SMTPSCRIPT_POSTFIX_READY_TIMEOUT:-30}"

log() { printf 'postfix-audit-setup[%s]: %s\n' "${PROFILE:-?}" "$*" >&2; }
die() {
    log "ERROR: $*"
    if [[ -n "${MAILLOG:-}" && -f "${MAILLOG}" ]]; then
        log "last lines of ${MAILLOG}:"
        tail -n 30 "${MAILLOG}" >&2 || true
    fi
    exit 1
}

[[ -n "$STATEDIR" && -n "$PROFILE" ]] || die "usage: $0 STATEDIR hardened|weak"
case "$PROFILE" in
    hardened)
        PORT="${SMTPSCRIPT_POSTFIX_HARDENED_PORT:-10125}"
        SMTPS_PORT="${SMTPSCRIPT_POSTFIX_HARDENED_SMTPS_PORT:-10165}"
        DOMAIN=hardened.test
        SASL_PASSWORD=hardened-alice-pw
        ;;
    weak)
        PORT="${SMTPSCRIPT_POSTFIX_WEAK_PORT:-10225}"
        SMTPS_PORT=""
        DOMAIN=weak.test
        SASL_PASSWORD=weak-alice-pw
        ;;
    *) die "unknown profile '${PROFILE}' (hardened or weak)" ;;
esac
MYHOSTNAME="mx.${DOMAIN}"
SASL_USER=alice
MECH_LIST="PLAIN LOGIN"
SYSLOG_NAME="postfix-audit-${PROFILE}"

[[ $(id -u) -eq 0 ]] || die "must run as root (Postfix needs to start as root)"
for tool in postfix postconf openssl saslpasswd2; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: apt-get install postfix sasl2-bin libsasl2-modules openssl"
done
for port in $PORT $SMTPS_PORT; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "invalid port: $port"
done
[[ "$PORT" != "$SMTPS_PORT" ]] || die "the ports must differ: ${PORT} ${SMTPS_PORT}"
case "$STATEDIR" in
    /*) ;;
    *) STATEDIR="$(pwd)/${STATEDIR}" ;;
esac
case "$STATEDIR" in
    *[[:space:],=\$]*) die "state dir must not contain spaces, commas, '=' or '\$': $STATEDIR" ;;
esac

CONF="${STATEDIR}/config"
# Debian's Postfix reads smtpd.conf from $config_directory/sasl/ (see tests/postfix/setup.sh).
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
MAIL_VERSION="$(postconf -dh mail_version)"

# smtpd_forbid_bare_newline exists in Postfix >= 3.9 and in the 3.5-3.8 patch releases of
# December 2023 onwards (Debian 12's 3.7.11 has it, default "no"); "normalize" came a
# little later. Older versions: the hardened instance simply runs without it.
SUPPORTS_BARE_NEWLINE=0
if [[ -n "$(postconf -dh smtpd_forbid_bare_newline 2>/dev/null)" ]]; then
    SUPPORTS_BARE_NEWLINE=1
fi
SUPPORTS_UNAUTH_PIPELINING=0
if [[ -n "$(postconf -dh smtpd_forbid_unauth_pipelining 2>/dev/null)" ]]; then
    SUPPORTS_UNAUTH_PIPELINING=1
fi

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
# Both profiles get a certificate (the weak one does not offer STARTTLS, but keeps the files
# so that a variant can switch it on with -o smtpd_tls_security_level=may).
if [[ ! -s "${TLSDIR}/server.pem" || ! -s "${TLSDIR}/server.key" || ! -s "${TLSDIR}/ca.pem" ]]; then
    log "creating the test CA and the server certificate (${MYHOSTNAME})"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -keyout "${TLSDIR}/ca.key" -out "${TLSDIR}/ca.pem" \
        -subj "/O=smtpscript tests/CN=smtpscript ${PROFILE} test CA" \
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
    # 825 days: well past the audit's "more than N days left" threshold, and within the
    # lifetime limit some TLS clients enforce.
    openssl x509 -req -in "${TLSDIR}/server.csr" -days 825 -sha256 \
        -CA "${TLSDIR}/ca.pem" -CAkey "${TLSDIR}/ca.key" -CAcreateserial \
        -extfile "${TLSDIR}/server.ext" -out "${TLSDIR}/server.pem" >/dev/null 2>&1 \
        || die "openssl: signing the server certificate failed"
    chmod 0600 "${TLSDIR}"/*.key
fi
# Renew the server certificate when fewer than 60 days are left (long-lived state dirs).
if ! openssl x509 -in "${TLSDIR}/server.pem" -noout -checkend $((60 * 86400)) >/dev/null 2>&1; then
    log "renewing the server certificate"
    openssl x509 -req -in "${TLSDIR}/server.csr" -days 825 -sha256 \
        -CA "${TLSDIR}/ca.pem" -CAkey "${TLSDIR}/ca.key" -CAcreateserial \
        -extfile "${TLSDIR}/server.ext" -out "${TLSDIR}/server.pem" >/dev/null 2>&1 \
        || die "openssl: renewing the server certificate failed"
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

# ---------------------------------------------------------------- recipients
cat >"${CONF}/vmailbox" <<EOF
postmaster@${DOMAIN}    ${DOMAIN}/postmaster/
alice@${DOMAIN}         ${DOMAIN}/alice/
EOF
# "postmaster" without a domain matches addresses in the domains of $mydestination and
# $inet_interfaces, i.e. postmaster@[127.0.0.1] (RFC 5321 4.5.1: postmaster at every domain).
cat >"${CONF}/virtual" <<EOF
postmaster                   postmaster@${DOMAIN}
postmaster@${MYHOSTNAME}     postmaster@${DOMAIN}
EOF
# Address literals of this host ([127.0.0.1]) are "local": list the only local recipient,
# so that <anything@[127.0.0.1]> is not accepted blindly (an empty local_recipient_maps
# would accept every local part).
cat >"${CONF}/local_recipients" <<EOF
postmaster    x
EOF

# ---------------------------------------------------------------- main.cf
common_main() {
    cat <<EOF
# Generated by tests/postfix_audit/setup.sh (${PROFILE}) -- private smtpscript test instance.
compatibility_level = 3.6
queue_directory = ${QUEUE}
data_directory = ${DATA}
mail_owner = postfix
syslog_name = ${SYSLOG_NAME}
maillog_file = ${MAILLOG}
maillog_file_prefixes = ${STATEDIR}
readme_directory = no
biff = no

myhostname = ${MYHOSTNAME}
mydomain = ${DOMAIN}
myorigin = \$mydomain
inet_interfaces = ${HOST}
inet_protocols = ipv4
append_dot_mydomain = no

mydestination =
local_recipient_maps = texthash:${CONF}/local_recipients
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
relay_domains =
virtual_alias_domains = ${MYHOSTNAME}
virtual_alias_maps = texthash:${CONF}/virtual
virtual_mailbox_domains = ${DOMAIN}
virtual_mailbox_base = ${MAILBASE}
virtual_mailbox_maps = texthash:${CONF}/vmailbox
virtual_uid_maps = static:${MAIL_UID}
virtual_gid_maps = static:${MAIL_GID}
virtual_minimum_uid = ${MAIL_UID}
unknown_virtual_mailbox_reject_code = 550
unknown_local_recipient_reject_code = 550
smtpd_reject_unlisted_recipient = yes
relay_domains_reject_code = 554

# Nothing ever leaves the host: every other domain (relayed mail, bounces to outsiders)
# goes to the discard transport, and master.cf has no smtp client.
default_transport = discard:smtpscript-test-no-outbound-mail
relay_transport = discard:smtpscript-test-no-outbound-mail

smtpd_delay_reject = yes
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_recipient_restrictions =
smtpd_discard_ehlo_keywords =
smtputf8_enable = yes

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
broken_sasl_auth_clients = no
EOF
}

hardened_main() {
    cat <<EOF

# ---- hardened
# 127.0.0.1 is deliberately NOT in mynetworks: loopback clients are outsiders.
mynetworks = 192.0.2.1/32
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_banner = \$myhostname ESMTP
disable_vrfy_command = yes
smtpd_helo_required = yes
message_size_limit = 10485760
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_auth_only = yes
EOF
    if ((SUPPORTS_BARE_NEWLINE)); then
        cat <<EOF
# SMTP smuggling (CVE-2023-51764): only <CR><LF>.<CR><LF> ends DATA; a bare <LF> ends a line.
smtpd_forbid_bare_newline = normalize
smtpd_forbid_bare_newline_exclusions =
EOF
    fi
    if ((SUPPORTS_UNAUTH_PIPELINING)); then
        echo "smtpd_forbid_unauth_pipelining = yes"
    fi
}

weak_main() {
    cat <<EOF

# ---- weak (deliberately)
# Loopback is trusted: it relays for the tests (and the relayed mail is discarded).
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_banner = \$myhostname ESMTP \$mail_name \$mail_version
disable_vrfy_command = no
smtpd_helo_required = no
message_size_limit = 0
# The virtual delivery agent refuses to run with a mailbox limit but no message size limit.
virtual_mailbox_limit = 0
smtpd_tls_security_level = none
smtpd_tls_auth_only = no
EOF
    if ((SUPPORTS_BARE_NEWLINE)); then
        cat <<EOF
# The stock Debian 12 value, spelled out: <LF>.<CR><LF> ends DATA (SMTP smuggling).
smtpd_forbid_bare_newline = no
EOF
    fi
}

{
    common_main
    if [[ "$PROFILE" == hardened ]]; then hardened_main; else weak_main; fi
} >"${CONF}/main.cf"

# ---------------------------------------------------------------- master.cf (no chroot, no smtp client)
{
    cat <<EOF
# Generated by tests/postfix_audit/setup.sh (${PROFILE}) -- private smtpscript test instance.
# service type  private unpriv  chroot  wakeup  maxproc command + args
${HOST}:${PORT} inet n - n - - smtpd
  -o syslog_name=${SYSLOG_NAME}/smtp
EOF
    if [[ -n "$SMTPS_PORT" ]]; then
        cat <<EOF
${HOST}:${SMTPS_PORT} inet n - n - - smtpd
  -o syslog_name=${SYSLOG_NAME}/smtps
  -o smtpd_tls_wrappermode=yes
EOF
    fi
    cat <<EOF
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
} >"${CONF}/master.cf"

# ---------------------------------------------------------------- start
log "checking the configuration"
out="$(postfix -c "$CONF" check 2>&1)" || die "postfix check failed: ${out}"
log "starting Postfix ${MAIL_VERSION} (config ${CONF})"
out="$(postfix -c "$CONF" start 2>&1)" || die "postfix start failed: ${out}"

# ---------------------------------------------------------------- wait for the banners
wait_banner() { # port: wait for "220 " on a plain connection
    local port=$1 deadline=$((SECONDS + READY_TIMEOUT)) line=""
    while ((SECONDS < deadline)); do
        # The braces matter: "exec 3<>... 2>/dev/null" alone would send the script's stderr
        # to /dev/null for good.
        if { exec 3<>"/dev/tcp/${HOST}/${port}"; } 2>/dev/null; then
            line=""
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
if [[ -n "$SMTPS_PORT" ]]; then
    smtps_banner="$(printf 'QUIT\r\n' | timeout 15 openssl s_client -connect "${HOST}:${SMTPS_PORT}" \
        -CAfile "$CA" -verify_return_error -verify_hostname "$MYHOSTNAME" -quiet 2>/dev/null || true)"
    [[ "$smtps_banner" == 220* ]] || die "no TLS banner on the smtps port ${HOST}:${SMTPS_PORT}"
fi

# ---------------------------------------------------------------- env file
cat >"${STATEDIR}/env" <<EOF
SMTPSCRIPT_AUDIT_KIND=postfix
SMTPSCRIPT_AUDIT_PROFILE=${PROFILE}
SMTPSCRIPT_AUDIT_STATEDIR=${STATEDIR}
SMTPSCRIPT_AUDIT_HOST=${HOST}
SMTPSCRIPT_AUDIT_PORT=${PORT}
SMTPSCRIPT_AUDIT_SMTPS_PORT=${SMTPS_PORT}
SMTPSCRIPT_AUDIT_HOSTNAME=${MYHOSTNAME}
SMTPSCRIPT_AUDIT_DOMAIN=${DOMAIN}
SMTPSCRIPT_AUDIT_CA=${CA}
SMTPSCRIPT_AUDIT_USER=${SASL_USER}@${DOMAIN}
SMTPSCRIPT_AUDIT_PASSWORD=${SASL_PASSWORD}
SMTPSCRIPT_AUDIT_MAILLOG=${MAILLOG}
SMTPSCRIPT_AUDIT_MAILDIR=${MAILBASE}
SMTPSCRIPT_AUDIT_VERSION=${MAIL_VERSION}
EOF
chmod 0644 "${STATEDIR}/env"

log "ready: Postfix ${MAIL_VERSION} (${PROFILE}) smtp ${HOST}:${PORT}${SMTPS_PORT:+, smtps ${HOST}:${SMTPS_PORT}}"
cat "${STATEDIR}/env"
