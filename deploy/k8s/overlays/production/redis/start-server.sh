# Starts one Valkey data server of the production overlay (redis-0, -1 or -2).
#
# Which server is the primary is the Sentinels' business, not the pod's: a server that
# restarts asks them first and follows whatever primary they name, so a former primary
# that comes back after a failover rejoins as a replica instead of as a second primary.
# Only when no Sentinel answers (a brand-new deployment) is redis-0 the primary.
#
# The password stays out of every command line (/proc/<pid>/cmdline is readable by
# anyone on the node who can list processes): valkey-cli takes it from REDISCLI_AUTH,
# valkey-server from a config file only this user can read, in a memory-backed emptyDir.
#
# Environment (set by the StatefulSet): REDISCLI_AUTH, ANNOUNCE_HOST (this pod's DNS
# name), FIRST_SERVER (redis-0's), SENTINELS (host names, space separated),
# MASTER_NAME, VALKEY_TLS_DIR, VALKEY_CONFIG_DIR, MAXMEMORY, APPENDFSYNC.
set -eu
umask 077

fail() {
    echo "start-server: $*" >&2
    exit 1
}

: "${REDISCLI_AUTH:?is empty: the Secret chat-redis-auth (key password) is missing}"
: "${ANNOUNCE_HOST:?}" "${FIRST_SERVER:?}" "${SENTINELS:?}" "${MASTER_NAME:?}"
: "${VALKEY_TLS_DIR:?}" "${VALKEY_CONFIG_DIR:?}" "${MAXMEMORY:?}" "${APPENDFSYNC:?}"

# A Secret made from a file written by `echo` ends in a newline, easy to miss and
# dropped by some clients but not others: refuse it here rather than see AUTH fail later.
case $REDISCLI_AUTH in
    *'
'*) fail "the password in Secret chat-redis-auth contains a newline; recreate it without one" ;;
esac

# The value as one double-quoted config argument (\ and " escaped). printf is a shell
# builtin and sed reads the password on stdin: neither puts it on a command line.
quoted() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# "host port" of the primary as the first Sentinel that knows it reports it, or nothing.
# A few rounds, so that a moment of unreachable Sentinels during a restart is not taken
# for a brand-new deployment.
ask_sentinels() {
    for round in 1 2 3; do
        for sentinel in $SENTINELS; do
            answer=$(valkey-cli --tls --cacert "$VALKEY_TLS_DIR/ca.crt" -h "$sentinel" \
                -p 26379 -t 2 --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" \
                2>/dev/null) || continue
            host=$(printf '%s\n' "$answer" | sed -n 1p)
            port=$(printf '%s\n' "$answer" | sed -n 2p)
            case $host in '' | *[!A-Za-z0-9.-]*) continue ;; esac
            case $port in '' | *[!0-9]*) continue ;; esac
            echo "$host $port"
            return 0
        done
        [ "$round" = 3 ] || sleep 2
    done
    return 0
}

primary=$(ask_sentinels)
if [ -n "$primary" ]; then
    echo "start-server: the Sentinels name ${primary% *} as the primary" >&2
else
    primary="$FIRST_SERVER 6379"
    echo "start-server: no Sentinel answered; $FIRST_SERVER is the primary" >&2
fi

config="$VALKEY_CONFIG_DIR/valkey.conf"
{
    printf '%s\n' \
        "# Written by start-server.sh at every start; edits here are lost." \
        "port 0" \
        "tls-port 6379" \
        "tls-cert-file $VALKEY_TLS_DIR/tls.crt" \
        "tls-key-file $VALKEY_TLS_DIR/tls.key" \
        "tls-ca-cert-file $VALKEY_TLS_DIR/ca.crt" \
        "tls-auth-clients no" \
        "tls-replication yes" \
        "requirepass $(quoted "$REDISCLI_AUTH")" \
        "masterauth $(quoted "$REDISCLI_AUTH")" \
        "dir /data" \
        "appendonly yes" \
        "appendfsync $APPENDFSYNC" \
        'save ""' \
        "maxmemory $MAXMEMORY" \
        "maxmemory-policy noeviction" \
        "replica-announce-ip $ANNOUNCE_HOST" \
        "replica-announce-port 6379"
    if [ "${primary% *}" != "$ANNOUNCE_HOST" ]; then
        printf '%s\n' "replicaof $primary"
    fi
} >"$config"
chmod 600 "$config"

exec valkey-server "$config"
