#!/usr/bin/env bash
# The production topology on one machine, every part on 127.0.0.1 (docs/deployment.md):
#   HAProxy (TLS with the server's certificate) -> REPLICAS x tsunagu-server (HTTPS on loopback ports)
#                                               -> nginx (artifact downloads: a replica authorizes, nginx sends the file)
#   PostgreSQL (the shared database), Mosquitto with dynamic security (push).
#
#   deploy/cluster.sh start [DIR]   starts everything under DIR (default .tsunagu/cluster); prints where it listens
#   deploy/cluster.sh stop  [DIR]   stops what start started, by the PIDs it wrote under DIR/run
#
# Settings (environment): PORT (HAProxy's port, default 8443), REPLICAS (default 2), SERVER_DLL (the server's build,
# default server/Tsunagu.Server/bin/Release/net10.0/tsunagu-server.dll), OPERATOR_PASSWORD (default: random, written
# to DIR/cluster.env), HAPROXY_HTTP_REUSE (HAProxy's http-reuse towards the replicas, default always; safe makes each
# unit connection open its own connection to a replica, as before). Every TSUNAGU_* variable reaches the replicas
# (docs/server.md, section 2).
set -euo pipefail

command=${1:-}
dir=$(mkdir -p "${2:-.tsunagu/cluster}" && cd "${2:-.tsunagu/cluster}" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run=$dir/run
logs=$dir/logs

fail() { echo "cluster: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# waits until TCP port $1 on 127.0.0.1 accepts, at most $2 seconds; $3 names it
wait_port() {
    for _ in $(seq 1 $(($2 * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "$3 did not open port $1 within $2 s (logs in $logs)"
}

as_user() { # runs "$@" as system user $user when root, else as this user
    local user=$1; shift
    if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# true when PID $1 is a process this cluster started: its command line names a file under DIR (a PID file left by
# a crash may name a process that has since been given the same number)
ours() {
    [[ $1 =~ ^[0-9]+$ ]] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$dir/"
}

stop() {
    for name in haproxy nginx $(cd "$run" 2>/dev/null && ls replica-*.pid 2>/dev/null | sed 's/\.pid$//') mosquitto; do
        local file=$run/$name.pid
        [ -f "$file" ] || continue
        local pid; pid=$(head -n1 "$file")
        if kill -0 "$pid" 2>/dev/null && ! ours "$pid"; then
            echo "cluster: $name's PID $pid is not a process of $dir any more; left alone" >&2
        elif kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$file"
    done
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        local pid; pid=$(head -n1 "$dir/pg/data/postmaster.pid")
        if kill -0 "$pid" 2>/dev/null && ours "$pid"; then
            kill -INT "$pid" # fast shutdown: a session still open elsewhere (psql, a pool) does not keep it running
            for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then echo "cluster: PostgreSQL ($pid) has not stopped within 30 s" >&2; fi
        fi
    fi
}

start() {
    local dll=${SERVER_DLL:-$repo/server/Tsunagu.Server/bin/Release/net10.0/tsunagu-server.dll}
    [ -f "$dll" ] || fail "the server is not built ($dll): run 'make build' or set SERVER_DLL"
    for program in haproxy nginx mosquitto mosquitto_ctrl openssl python3; do
        command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || fail "$program is not installed (make packages)"
    done
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [ -n "$pgbin" ] || fail "PostgreSQL is not installed (make packages)"
    [ -f "$run/haproxy.pid" ] && fail "a cluster already runs in $dir (deploy/cluster.sh stop $dir)"
    mkdir -p "$run" "$logs" "$dir/data/artifacts" "$dir/nginx" "$dir/tls"
    chmod 755 "$dir" "$dir/data" "$dir/data/artifacts" # nginx's workers (nobody when started as root) read the artifacts

    local port=${PORT:-8443} pgport mqport nginxport password
    pgport=$(free_port); mqport=$(free_port); nginxport=$(free_port)
    password=${OPERATOR_PASSWORD:-$(openssl rand -hex 16)}

    # PostgreSQL: its own cluster in DIR/pg, trust on loopback only, database "tsunagu"
    if [ ! -d "$dir/pg/data" ]; then
        mkdir -p "$dir/pg"
        [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/pg"
        as_user postgres "$pgbin/initdb" -D "$dir/pg/data" -U tsunagu -A trust -E UTF8 >"$logs/initdb.log" 2>&1
    fi
    as_user postgres "$pgbin/postgres" -D "$dir/pg/data" -p "$pgport" -k "$dir/pg" -c listen_addresses=127.0.0.1 \
        -c max_connections=300 >"$logs/postgres.log" 2>&1 &
    wait_port "$pgport" 30 postgres
    for _ in $(seq 1 50); do "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U tsunagu -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
    "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U tsunagu -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'tsunagu'" | grep -q 1 \
        || "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U tsunagu tsunagu

    # Mosquitto with dynamic security: the replicas share it and manage the unit accounts on it
    local mqpassword; mqpassword=$(openssl rand -hex 16)
    rm -f "$dir/mosquitto-dynsec.json"
    mosquitto_ctrl dynsec init "$dir/mosquitto-dynsec.json" admin "$mqpassword" >/dev/null
    cat >"$dir/mosquitto.conf" <<EOF
listener $mqport 127.0.0.1
allow_anonymous false
plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
plugin_opt_config_file $dir/mosquitto-dynsec.json
persistence false
log_dest stdout
log_type error
log_type warning
EOF
    [ "$(id -u)" -eq 0 ] && chown mosquitto "$dir/mosquitto-dynsec.json"
    /usr/sbin/mosquitto -c "$dir/mosquitto.conf" >"$logs/mosquitto.log" 2>&1 &
    echo $! >"$run/mosquitto.pid"
    wait_port "$mqport" 15 mosquitto

    # the replicas: one data directory (keys, certificate, artifacts), the database, the broker. The first one
    # creates the keys, the certificate and the schema; the others start after it.
    local replicas=${REPLICAS:-2} ports=()
    for i in $(seq 1 "$replicas"); do
        local rport; rport=$(free_port); ports+=("$rport")
        dotnet "$dll" --DataDirectory="$dir/data" --ListenAddress=127.0.0.1 --Port="$rport" \
            --Database="Host=127.0.0.1;Port=$pgport;Username=tsunagu;Database=tsunagu;Maximum Pool Size=100" \
            --Mqtt="mqtt://admin:$mqpassword@127.0.0.1:$mqport" --HostServerUrl="https://127.0.0.1:$port/" \
            --TrustedProxies:0=127.0.0.1 --ArtifactRedirectPrefix=/internal/artifacts/ \
            --OperatorName=operator --OperatorPassword="$password" \
            --Logging:LogLevel:Default=Warning --Logging:LogLevel:Tsunagu.Server.Cluster=Information \
            >"$logs/replica-$i.log" 2>&1 &
        echo $! >"$run/replica-$i.pid"
        wait_port "$rport" 120 "replica $i"
    done

    # HAProxy presents the server's certificate and key (the key units pin): a PEM of both, readable by root only
    (umask 077; openssl pkcs12 -in "$dir/data/tls/server.pfx" -nodes -passin pass: >"$dir/tls/haproxy.pem" 2>"$logs/openssl.log" \
        || openssl pkcs12 -legacy -in "$dir/data/tls/server.pfx" -nodes -passin pass: >"$dir/tls/haproxy.pem")

    local servers="" upstream=""
    for i in $(seq 1 "$replicas"); do
        servers+="    server replica-$i 127.0.0.1:${ports[$((i - 1))]}"$'\n'
        upstream+="        server 127.0.0.1:${ports[$((i - 1))]} max_fails=1 fail_timeout=2s;"$'\n'
    done

    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $run/nginx.pid;
error_log $logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    upstream replicas {
$upstream        keepalive 16;
    }
    server {
        listen 127.0.0.1:$nginxport;
        # reached only through a replica's X-Accel-Redirect (after it checked the unit's token)
        location /internal/artifacts/ {
            internal;
            alias $dir/data/artifacts/;
            default_type application/octet-stream;
        }
        location / {
            proxy_pass https://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_ssl_trusted_certificate $dir/data/tls/server.pem;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
    nginx -c "$dir/nginx.conf" -p "$dir/nginx" -g 'daemon off;' >"$logs/nginx.log" 2>&1 &
    wait_port "$nginxport" 15 nginx

    cat >"$dir/haproxy.cfg" <<EOF
global
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 15s
    timeout check 5s
    retries 2
    option redispatch 1
frontend units
    bind 127.0.0.1:$port ssl crt $dir/tls/haproxy.pem alpn http/1.1
    http-request del-header X-Forwarded-For
    option forwardfor
    use_backend artifacts if { path_beg /api/v1/host/artifacts/ }
    default_backend replicas
backend replicas
    balance roundrobin
    # every unit request carries its own bearer token and no connection state: any idle connection to a replica may
    # carry it, so a unit's new TLS connection does not cost a new TLS connection (and handshake) to a replica too
    http-reuse ${HAPROXY_HTTP_REUSE:-always}
    option httpchk GET /healthz
    http-check expect status 200
    default-server ssl verify required ca-file $dir/data/tls/server.pem verifyhost localhost check inter 2s fall 3 rise 1
$servers
backend artifacts
    server nginx 127.0.0.1:$nginxport
EOF
    haproxy -c -q -f "$dir/haproxy.cfg" || fail "haproxy refused its configuration ($dir/haproxy.cfg)"
    haproxy -db -f "$dir/haproxy.cfg" >"$logs/haproxy.log" 2>&1 &
    echo $! >"$run/haproxy.pid"
    wait_port "$port" 15 haproxy

    cat >"$dir/cluster.env" <<EOF
URL=https://127.0.0.1:$port/
CERTIFICATE=$dir/data/tls/server.pem
OPERATOR_NAME=operator
OPERATOR_PASSWORD=$password
DATABASE=Host=127.0.0.1;Port=$pgport;Username=tsunagu;Database=tsunagu
MQTT=mqtt://admin:$mqpassword@127.0.0.1:$mqport
DATA=$dir/data
REPLICA_PORTS=${ports[*]}
NGINX_PORT=$nginxport
EOF
    chmod 600 "$dir/cluster.env"
    echo "cluster: https://127.0.0.1:$port/ (HAProxy) -> $replicas replicas on ${ports[*]}, nginx on $nginxport, PostgreSQL on $pgport, Mosquitto on $mqport"
    echo "cluster: operator 'operator', password in $dir/cluster.env; stop with: deploy/cluster.sh stop $dir"
}

case $command in
    start) start ;;
    stop) stop ;;
    *) echo "usage: deploy/cluster.sh start|stop [DIR]" >&2; exit 2 ;;
esac
