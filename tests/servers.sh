# shellcheck shell=bash
# Shared by the setup.sh and teardown.sh scripts of the private loopback test servers
# (tests/postfix, tests/postfix_audit, tests/exim, tests/dovecot). Not a script: source it,
#
#     # shellcheck source=tests/servers.sh
#     source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"
#
# The functions read these globals, which the sourcing script sets:
#   LOG_TAG        what every log line starts with, e.g. "postfix-setup" (default: $0's name)
#   STATEDIR       the server's state directory
#   DIE_LOGS       log files whose last DIE_LINES lines `die` shows (array, empty by default)
#   DIE_LINES      30 by default
#   READY_TIMEOUT  how long (seconds) the wait_* functions wait for a server; 30 by default
# The postfix_* functions (at the end) use the layout postfix_paths sets (CONF, TLSDIR, ...).

LOG_TAG="${0##*/}"
DIE_LOGS=()
DIE_LINES=30
READY_TIMEOUT=30

# ---------------------------------------------------------------------- logging
log() { printf '%s: %s\n' "$LOG_TAG" "$*" >&2; }

die() { # MESSAGE: log it, show the end of each of DIE_LOGS that exists, exit 1
    log "ERROR: $*"
    local file
    for file in "${DIE_LOGS[@]}"; do
        if [[ -f "$file" ]]; then
            log "last lines of ${file}:"
            tail -n "$DIE_LINES" "$file" >&2 || true
        fi
    done
    exit 1
}

# ---------------------------------------------------------------------- checks
require_root() { # [WHY]
    [[ $(id -u) -eq 0 ]] || die "must run as root${1:+ ($1)}"
}

require_tools() { # HINT TOOL...: die unless every TOOL is on PATH ("'TOOL' not found: HINT")
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found${hint:+: $hint}"
    done
}

check_ports() { # PORT...: each a number from 1 to 65535, no two the same
    local port
    for port in "$@"; do
        if [[ ! "$port" =~ ^[0-9]+$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
            die "invalid port: $port"
        fi
    done
    if (($# > 1)) && [[ $(printf '%s\n' "$@" | sort -u | wc -l) -ne $# ]]; then
        die "the ports must all differ: $*"
    fi
}

# shellcheck disable=SC2120 # the arguments are optional
absolute_statedir() { # [FORBIDDEN WHAT]: make STATEDIR absolute; with FORBIDDEN (characters),
    # die if it holds white space or one of them ("must not contain spaces, WHAT")
    case "$STATEDIR" in
        /*) ;;
        *) STATEDIR="$(pwd)/${STATEDIR}" ;;
    esac
    # shellcheck disable=SC2101 # [:space:] is inside a bracket expression
    if (($# == 2)) && [[ "$STATEDIR" == *[[:space:]"$1"]* ]]; then
        die "state dir must not contain spaces, $2: $STATEDIR"
    fi
}

# ---------------------------------------------------------------------- waiting
wait_while() { # TENTHS COMMAND...: wait up to TENTHS tenths of a second while COMMAND succeeds;
    # fails if it still does
    local tenths=$1 _
    shift
    for _ in $(seq 1 "$tenths"); do
        "$@" || return 0
        sleep 0.1
    done
    ! "$@"
}

retry_ready() { # COMMAND...: run it until it succeeds, for up to READY_TIMEOUT seconds;
    # its last output (stdout and stderr) is left in READY_OUTPUT
    local deadline=$((SECONDS + READY_TIMEOUT))
    READY_OUTPUT=""
    while ((SECONDS < deadline)); do
        if READY_OUTPUT="$("$@" 2>&1)"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

smtp_banner() { # HOST PORT [PROXY-LINE]: connect (send that PROXY header first), print the first
    # line the server sends, QUIT; succeeds when that line is a 220. Run it in $(...).
    local line=""
    # The braces matter: "exec 3<>... 2>/dev/null" alone would send stderr to /dev/null for
    # good (exec without a command keeps its redirections).
    { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
    if [[ -n "${3:-}" ]]; then
        printf '%s\r\n' "$3" >&3 2>/dev/null || true
    fi
    IFS= read -r -t 5 line <&3 || true
    printf 'QUIT\r\n' >&3 2>/dev/null || true
    exec 3<&- 3>&- || true
    printf '%s\n' "${line%$'\r'}"
    [[ "$line" == 220* ]]
}

wait_banner() { # HOST PORT [PROXY-LINE]: wait for a "220" banner (see smtp_banner)
    retry_ready smtp_banner "$@" \
        || die "no '220' banner on $1:$2 after ${READY_TIMEOUT}s (last line: '${READY_OUTPUT}')"
}

check_tls_banner() { # HOST PORT CA_FILE NAME: implicit TLS, certificate verified for NAME, 220
    local banner
    banner="$(printf 'QUIT\r\n' | timeout 15 openssl s_client -connect "$1:$2" \
        -CAfile "$3" -verify_return_error -verify_hostname "$4" -quiet 2>/dev/null || true)"
    [[ "$banner" == 220* ]] || die "no TLS banner on the smtps port $1:$2"
}

# ---------------------------------------------------------------------- daemons by pid file
daemon_pid() { # PIDFILE exe PATH | PIDFILE cmdline TEXT: print the pid in PIDFILE if that
    # process runs and really is ours: its executable is PATH, or its command line (arguments
    # joined by spaces) contains TEXT. A stale pid file may name an unrelated process by now.
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    is_alive "$pid" || return 1
    case "$2" in
        exe) [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "$3" ]] || return 1 ;;
        cmdline) tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "$3" || return 1 ;;
        *) return 1 ;;
    esac
    printf '%s\n' "$pid"
}

is_alive() { kill -0 "$1" 2>/dev/null; }

terminate() { # PID TENTHS: SIGTERM, then wait up to TENTHS tenths of a second for it to end;
    # fails if it has not
    kill -TERM "$1" 2>/dev/null || true
    wait_while "$2" is_alive "$1"
}

purge_statedir() { # VARIABLE: delete STATEDIR when $VARIABLE is 1 (teardown scripts)
    if [[ "${!1:-0}" == 1 && -d "$STATEDIR" ]]; then
        rm -rf -- "$STATEDIR"
    fi
}

# ---------------------------------------------------------------------- TLS
server_certificate() { # TLSDIR HOSTNAME CA_LABEL DAYS CA_COPY
    # A private CA (TLSDIR/ca.pem, CN "smtpscript CA_LABEL test CA") signs a server certificate
    # for HOSTNAME (SAN also localhost and 127.0.0.1), valid DAYS days; made once, renewed when
    # fewer than 60 days are left (long-lived state dirs). The CA is copied to CA_COPY (0644).
    # A CA, not a lone self-signed certificate: one with CA:TRUE used as a server certificate
    # is rejected by strict verifiers (Python >= 3.13 VERIFY_X509_STRICT).
    local dir=$1 name=$2 label=$3 days=$4 copy=$5
    if [[ ! -s "${dir}/server.pem" || ! -s "${dir}/server.key" || ! -s "${dir}/ca.pem" ]]; then
        log "creating the test CA and the server certificate (${name})"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -keyout "${dir}/ca.key" -out "${dir}/ca.pem" \
            -subj "/O=smtpscript tests/CN=smtpscript ${label:+${label} }test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" >/dev/null 2>&1 || die "openssl: CA creation failed"
        openssl req -new -newkey rsa:2048 -nodes -sha256 \
            -keyout "${dir}/server.key" -out "${dir}/server.csr" \
            -subj "/O=smtpscript tests/CN=${name}" >/dev/null 2>&1 || die "openssl: CSR failed"
        cat >"${dir}/server.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:${name},DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
        sign_server_certificate "$dir" "$days" || die "openssl: signing the server certificate failed"
        chmod 0600 "${dir}"/*.key
    fi
    if ! openssl x509 -in "${dir}/server.pem" -noout -checkend $((60 * 86400)) >/dev/null 2>&1; then
        log "renewing the server certificate"
        sign_server_certificate "$dir" "$days" || die "openssl: renewing the server certificate failed"
    fi
    install -m 0644 "${dir}/ca.pem" "$copy"
}

sign_server_certificate() { # TLSDIR DAYS
    openssl x509 -req -in "$1/server.csr" -days "$2" -sha256 \
        -CA "$1/ca.pem" -CAkey "$1/ca.key" -CAcreateserial \
        -extfile "$1/server.ext" -out "$1/server.pem" >/dev/null 2>&1
}

# ---------------------------------------------------------------------- env file
write_env() { # PREFIX KEY=VALUE...: STATEDIR/env (shell syntax), a line PREFIXKEY=VALUE each;
    # a VALUE with white space in it is double-quoted
    local prefix=$1 pair value
    shift
    for pair in "$@"; do
        value="${pair#*=}"
        if [[ "$value" == *[[:space:]]* ]]; then
            value="\"${value}\""
        fi
        printf '%s%s=%s\n' "$prefix" "${pair%%=*}" "$value"
    done >"${STATEDIR}/env"
    chmod 0644 "${STATEDIR}/env"
}

ready() { # MESSAGE: log "ready: MESSAGE", print the env file
    log "ready: $*"
    cat "${STATEDIR}/env"
}

# ---------------------------------------------------------------------- Postfix
# A private Postfix (tests/postfix, tests/postfix_audit) is `postfix -c STATEDIR/config`
# with its own queue and data directories, Cyrus SASL (sasldb) and no smtp client.

postfix_require() { # root, and the tools
    require_root "Postfix needs to start as root"
    require_tools "apt-get install postfix sasl2-bin libsasl2-modules openssl" \
        postfix postconf openssl saslpasswd2
}

# shellcheck disable=SC2034 # the layout is for the sourcing script
postfix_paths() { # the layout of STATEDIR (absolute by now), and the postfix user's ids
    CONF="${STATEDIR}/config"
    # Debian's Postfix reads smtpd.conf from $config_directory/sasl/ whatever
    # cyrus_sasl_config_path says, so the SASL config lives there (and cyrus_sasl_config_path
    # points at it too).
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
}

postfix_running() { postfix -c "$CONF" status >/dev/null 2>&1; }

postfix_stop() { # postfix stop, and wait (5 s at most) for it; fails if it still runs
    postfix -c "$CONF" stop >/dev/null 2>&1 || true
    wait_while 50 postfix_running
}

postfix_prepare() { # CA_LABEL DAYS: stop a previous run; the directories, the certificate for
    # MYHOSTNAME (see server_certificate) and the SASL users
    if [[ -f "${CONF}/main.cf" ]] && postfix_running; then
        log "stopping the running instance (${CONF})"
        postfix_stop || true
    fi
    install -d -m 0755 -o root -g root "$STATEDIR" "$CONF" "$QUEUE"
    install -d -m 0750 -o root -g postfix "$SASLDIR"
    install -d -m 0700 -o root -g root "$TLSDIR"
    install -d -m 0700 -o postfix -g postfix "$DATA"
    install -d -m 0755 -o postfix -g postfix "$MAILBASE"
    touch "$MAILLOG"
    chmod 0644 "$MAILLOG"
    server_certificate "$TLSDIR" "$MYHOSTNAME" "$1" "$2" "$CA"
    postfix_sasldb
}

postfix_sasldb() { # SASL_USER@DOMAIN with SASL_PASSWORD in SASLDB; smtpd.conf offers MECH_LIST
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
}

postfix_main_paths() { # SYSLOG_NAME: main.cf lines, the instance's own directories and log
    cat <<EOF
compatibility_level = 3.6
queue_directory = ${QUEUE}
data_directory = ${DATA}
mail_owner = postfix
syslog_name = $1
maillog_file = ${MAILLOG}
maillog_file_prefixes = ${STATEDIR}
readme_directory = no
biff = no
EOF
}

postfix_main_tls_sasl() { # main.cf lines: the certificate, no TLS for the (absent) smtp
    # client, Cyrus SASL from SASLDIR
    cat <<EOF
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
EOF
}

postfix_master_services() { # master.cf lines: the internal services (no chroot, no smtp client)
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
}

# shellcheck disable=SC2120 # the argument is optional
postfix_start() { # [WHAT]: postfix check, then postfix start ("starting Postfix WHAT (config ...)")
    local out
    log "checking the configuration"
    out="$(postfix -c "$CONF" check 2>&1)" || die "postfix check failed: ${out}"
    log "starting Postfix ${1:+$1 }(config ${CONF})"
    out="$(postfix -c "$CONF" start 2>&1)" || die "postfix start failed: ${out}"
}

postfix_teardown() { # stop the instance in CONF (postfix abort if it will not stop);
    # SMTPSCRIPT_POSTFIX_PURGE=1 deletes STATEDIR too
    if [[ -f "${CONF}/main.cf" ]] && command -v postfix >/dev/null 2>&1; then
        if postfix_running; then
            log "stopping the instance in ${CONF}"
            postfix_stop || postfix -c "$CONF" abort >/dev/null 2>&1 || true
        else
            log "not running (${CONF})"
        fi
    else
        log "nothing to stop (${CONF})"
    fi
    purge_statedir SMTPSCRIPT_POSTFIX_PURGE
}
