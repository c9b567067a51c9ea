#!/bin/sh
# Writes the Docker secrets docker-compose.yml reads, into deploy/secrets/ (or $OPS_SECRETS_DIR):
#   dagster_pg_password, warehouse_pg_password, bot_pg_password   random, 32 characters
#   ops_warehouse_url   postgresql://ops_warehouse:<password>@warehouse-db:5432/warehouse
#   ops_source_url      the bot's database: $OPS_SOURCE_URL if set, with --demo the bot-db of the
#                       demo profile; otherwise write it yourself (one line, a postgresql:// DSN)
# Existing files are kept (a password already in a database volume must not change under it).
# The directory is mode 0700; the files 0644, because the containers read them as their own
# non-root users through the bind mount Compose makes of each secret file.
set -eu
umask 077
demo=no
[ "${1:-}" = "--demo" ] && demo=yes
dir="${OPS_SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}"
mkdir -p "$dir"
chmod 700 "$dir"

random_password() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

write() {  # write NAME VALUE: only if missing
    if [ -s "$dir/$1" ]; then
        echo "kept    $dir/$1"
    else
        printf '%s\n' "$2" > "$dir/$1"
        echo "wrote   $dir/$1"
    fi
    chmod 644 "$dir/$1"
}

for name in dagster_pg_password warehouse_pg_password bot_pg_password; do
    write "$name" "$(random_password)"
done
write ops_warehouse_url "postgresql://ops_warehouse:$(cat "$dir/warehouse_pg_password")@warehouse-db:5432/warehouse"
if [ -n "${OPS_SOURCE_URL:-}" ]; then
    write ops_source_url "$OPS_SOURCE_URL"
elif [ "$demo" = yes ]; then
    write ops_source_url "postgresql://bot:$(cat "$dir/bot_pg_password")@bot-db:5432/bot"
elif [ ! -s "$dir/ops_source_url" ]; then
    echo "missing $dir/ops_source_url: write the bot database's DSN into it (or rerun with" >&2
    echo "        OPS_SOURCE_URL=postgresql://... set, or --demo for the demo profile's bot-db)" >&2
    exit 1
else
    echo "kept    $dir/ops_source_url"
fi
