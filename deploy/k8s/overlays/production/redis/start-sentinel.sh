# Starts one Sentinel of the production overlay (redis-sentinel-0, -1 or -2).
#
# A Sentinel that restarts asks the other Sentinels which server is the primary now
# and monitors that one; only when none answers (a brand-new deployment, or every
# Sentinel lost at once: docs/deploy.md) does it take redis-0. The config file is
# written afresh at every start into a memory-backed emptyDir, which Sentinel then
# rewrites as it learns the replicas and the other Sentinels.
#
# The password stays out of every command line (see start-server.sh).
#
# Environment (set by the StatefulSet): REDISCLI_AUTH, ANNOUNCE_HOST (this pod's DNS
# name), FIRST_SERVER (redis-0's), SENTINELS (host names, space separated, this one
# included), MASTER_NAME, VALKEY_TLS_DIR, VALKEY_CONFIG_DIR.
set -eu
umask 077

fail() {
    echo "start-sentinel: $*" >&2
    exit 1
}

: "${REDISCLI_AUTH:?is empty: the Secret chat-redis-auth (key password) is missing}"
: "${ANNOUNCE_HOST:?}" "${FIRST_SERVER:?}" "${SENTINELS:?}" "${MASTER_NAME:?}"
: "${VALKEY_TLS_DIR:?}" "${VALKEY_CONFIG_DIR:?}"

case $REDISCLI_AUTH in
    *'
'*) fail "the password in Secret chat-redis-auth contains a newline; recreate it without one" ;;
esac

quoted() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# "host port" of the primary as another Sentinel reports it, or nothing.
ask_other_sentinels() {
    for sentinel in $SENTINELS; do
        [ "$sentinel" != "$ANNOUNCE_HOST" ] || continue
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
    return 0
}

primary=$(ask_other_sentinels)
if [ -n "$primary" ]; then
    echo "start-sentinel: the other Sentinels name ${primary% *} as the primary" >&2
else
    primary="$FIRST_SERVER 6379"
    echo "start-sentinel: no other Sentinel answered; monitoring $FIRST_SERVER" >&2
fi

# Sentinel refuses to start on a monitored name it cannot resolve; the primary's DNS
# record appears once its pod has an address (redis-headless publishes pods that are
# not ready yet). The startup probe bounds this wait.
until getent hosts "${primary% *}" >/dev/null; do
    echo "start-sentinel: waiting for ${primary% *} to resolve" >&2
    sleep 2
done

config="$VALKEY_CONFIG_DIR/sentinel.conf"
# resolve-hostnames comes before the monitor line, which names the primary by host name.
printf '%s\n' \
    "# Written by start-sentinel.sh at every start, then rewritten by Sentinel." \
    "port 0" \
    "tls-port 26379" \
    "tls-cert-file $VALKEY_TLS_DIR/tls.crt" \
    "tls-key-file $VALKEY_TLS_DIR/tls.key" \
    "tls-ca-cert-file $VALKEY_TLS_DIR/ca.crt" \
    "tls-auth-clients no" \
    "tls-replication yes" \
    "dir $VALKEY_CONFIG_DIR" \
    "requirepass $(quoted "$REDISCLI_AUTH")" \
    "sentinel resolve-hostnames yes" \
    "sentinel announce-hostnames yes" \
    "sentinel announce-ip $ANNOUNCE_HOST" \
    "sentinel announce-port 26379" \
    "sentinel monitor $MASTER_NAME $primary 2" \
    "sentinel down-after-milliseconds $MASTER_NAME 5000" \
    "sentinel failover-timeout $MASTER_NAME 60000" \
    "sentinel parallel-syncs $MASTER_NAME 1" \
    "sentinel auth-pass $MASTER_NAME $(quoted "$REDISCLI_AUTH")" \
    >"$config"
chmod 600 "$config"

exec valkey-server "$config" --sentinel
