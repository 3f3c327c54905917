#!/usr/bin/env bash
# A throwaway local PostgreSQL server for the tests of the annotation server's PostgreSQL
# backend: a fresh cluster in a temporary folder, on 127.0.0.1 and a free port, with a
# password-protected superuser.
#
#   scripts/postgres.sh start DIR   prints `export BEDSIDE_TEST_POSTGRES=postgres://...`
#   scripts/postgres.sh stop DIR    stops it (the folder is left to the caller)
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
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Durability is not under test here; fsync off keeps the suite quick.
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "export BEDSIDE_TEST_POSTGRES=postgres://bedside:$password@127.0.0.1:$port/postgres"
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
