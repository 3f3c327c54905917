#!/usr/bin/env bash
# A throwaway local PostgreSQL server for the tests of the annotation server's PostgreSQL
# backend: a fresh cluster in a temporary folder, on 127.0.0.1 and a free port, with a
# password-protected superuser.
#
#   scripts/postgres.sh start DIR   prints `export BEDSIDE_TEST_POSTGRES=postgres://...` and
#                                   `export BEDSIDE_TEST_POSTGRES_CA=DIR/ca.crt`
#   scripts/postgres.sh stop DIR    stops it (the folder is left to the caller)
#
# The server also accepts TLS (clients choose: sslmode=require), with a certificate for
# 127.0.0.1 signed by a throwaway certificate authority (DIR/ca.crt).
#
# Needs Debian's postgresql package (scripts/setup.sh installs it). As root the server runs
# as the `postgres` account, since PostgreSQL refuses to run as root.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bin" || ! -x "$bin/pg_ctl" ]]; then
  echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi

as_owner=()
if [[ $(id -u) -eq 0 ]]; then
  as_owner=(runuser -u postgres --)
fi

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir"; fi
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" > "$dir/pwfile"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir/pwfile"; fi
    chmod 600 "$dir/pwfile"
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U bedside --pwfile="$dir/pwfile" \
      -A scram-sha-256 -E UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    rm -f "$dir/pwfile"
    # A certificate authority and a server certificate it signs, for the TLS tests.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=Bedside test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
    chmod 600 "$dir/server.key"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir/server.key" "$dir/server.crt"; fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Durability is not under test here; fsync off keeps the suite quick.
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "export BEDSIDE_TEST_POSTGRES=postgres://bedside:$password@127.0.0.1:$port/postgres"
    echo "export BEDSIDE_TEST_POSTGRES_CA=$dir/ca.crt"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
