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

# shellcheck source=tests/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"

STATEDIR="${1:-}"
PROFILE="${2:-}"
HOST=127.0.0.1
READY_TIMEOUT="${SMTPSCRIPT_POSTFIX_READY_TIMEOUT:-30}"
LOG_TAG="postfix-audit-setup[${PROFILE:-?}]"

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

postfix_require
check_ports "$PORT" ${SMTPS_PORT:+"$SMTPS_PORT"}
absolute_statedir ",=\$" "commas, '=' or '\$'"
postfix_paths
DIE_LOGS=("$MAILLOG")
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

# ---------------------------------------------------------------- directories, certificate, SASL
# Both profiles get a certificate (the weak one does not offer STARTTLS, but keeps the files
# so that a variant can switch it on with -o smtpd_tls_security_level=may). 825 days: well
# past the audit's "more than N days left" threshold, and within the lifetime limit some TLS
# clients enforce.
postfix_prepare "$PROFILE" 825

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
$(postfix_main_paths "$SYSLOG_NAME")

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

$(postfix_main_tls_sasl)
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
    postfix_master_services
} >"${CONF}/master.cf"

# ---------------------------------------------------------------- start, wait for the banners
postfix_start "$MAIL_VERSION"
wait_banner "$HOST" "$PORT"
if [[ -n "$SMTPS_PORT" ]]; then
    check_tls_banner "$HOST" "$SMTPS_PORT" "$CA" "$MYHOSTNAME"
fi

# ---------------------------------------------------------------- env file
write_env SMTPSCRIPT_AUDIT_ \
    "KIND=postfix" \
    "PROFILE=${PROFILE}" \
    "STATEDIR=${STATEDIR}" \
    "HOST=${HOST}" \
    "PORT=${PORT}" \
    "SMTPS_PORT=${SMTPS_PORT}" \
    "HOSTNAME=${MYHOSTNAME}" \
    "DOMAIN=${DOMAIN}" \
    "CA=${CA}" \
    "USER=${SASL_USER}@${DOMAIN}" \
    "PASSWORD=${SASL_PASSWORD}" \
    "MAILLOG=${MAILLOG}" \
    "MAILDIR=${MAILBASE}" \
    "VERSION=${MAIL_VERSION}"
ready "Postfix ${MAIL_VERSION} (${PROFILE}) smtp ${HOST}:${PORT}${SMTPS_PORT:+, smtps ${HOST}:${SMTPS_PORT}}"
