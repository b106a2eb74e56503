#!/usr/bin/env bash
# Write the secrets of deploy/docker-compose.yml into deploy/secrets/ (git-ignored), once:
# a file that exists is kept, since a master key must never change after the first start.
#
#   deploy/compose-secrets.sh            # then: docker compose -f deploy/docker-compose.yml up
#
#   master-key          base64 of 32 random bytes  -> CONTACTSTREAM_MASTER_KEY
#   postgres-password   the database role's password (the postgres service reads it)
#   database-url        postgresql://contactstream:PASSWORD@postgres:5432/contactstream
#                                                  -> CONTACTSTREAM_DATABASE_URL
#   tokens.json         {"publisher", "agent", "supervisor", "admin"} -> CONTACTSTREAM_TOKENS_FILE
#
# Compose (without swarm) bind-mounts secret files with their host owner and mode, and
# the containers run as uid 10001: the files are made readable (0644) inside a folder only
# you can enter (0700). Back the master key up in your secret store.
set -euo pipefail

dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"
umask 0022

py() { python3 -c "$1"; }
write() {  # name command: the command's output into dir/name, unless it is there
  local name="$1"; shift
  if [[ -s "$dir/$name" ]]; then echo "kept    $dir/$name"; return; fi
  "$@" > "$dir/$name.tmp"
  mv "$dir/$name.tmp" "$dir/$name"
  echo "wrote   $dir/$name"
}

write master-key py "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"
# hex only: the URL takes the password as written, so nothing needs percent-encoding
write postgres-password py "import secrets; print(secrets.token_hex(24), end='')"
password="$(cat "$dir/postgres-password")"
write database-url printf 'postgresql://contactstream:%s@postgres:5432/contactstream' "$password"
write tokens.json py "import json, secrets; print(json.dumps({r: secrets.token_urlsafe(32)
    for r in ('publisher', 'agent', 'supervisor', 'admin')}, indent=2))"
chmod 0644 "$dir"/master-key "$dir"/postgres-password "$dir"/database-url "$dir"/tokens.json
