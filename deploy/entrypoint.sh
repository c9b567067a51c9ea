#!/bin/sh
# Entrypoint of the ops-warehouse image (every service: code, webserver, daemon, simulator).
#
# Docker secrets: for each variable NAME below, NAME_FILE may name a file (e.g. /run/secrets/...)
# whose content becomes NAME, so passwords and DSNs never sit in the compose file, in `docker
# inspect` or in an env file. Setting both NAME and NAME_FILE is an error. More names can be added
# with OPS_SECRET_VARS="NAME1 NAME2".
# Then DAGSTER_HOME is created and gets deploy/dagster.yaml if it has no dagster.yaml yet, and the
# command runs (exec: it gets the signals, e.g. `docker compose stop` -> SIGTERM).
set -eu

secret_vars="DAGSTER_PG_PASSWORD OPS_SOURCE_URL OPS_WAREHOUSE_URL OPS_ALERT_SLACK_WEBHOOK_URL \
OPS_ALERT_WEBHOOK_URL OPS_ALERT_SMTP_USERNAME OPS_ALERT_SMTP_PASSWORD ${OPS_SECRET_VARS:-}"

for name in $secret_vars; do
    file_var="${name}_FILE"
    eval "file=\${$file_var:-}"
    [ -n "$file" ] || continue
    eval "already=\${$name:-}"
    if [ -n "$already" ]; then
        echo "entrypoint: both $name and $file_var are set; set only one" >&2
        exit 64
    fi
    if [ ! -r "$file" ]; then
        echo "entrypoint: $file_var=$file is not a readable file" >&2
        exit 66
    fi
    # the content without its trailing newline(s), as `echo secret > file` leaves one
    value="$(cat "$file")"
    export "$name=$value"
    unset "$file_var"
done

here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${DAGSTER_HOME:-}" ]; then
    mkdir -p "$DAGSTER_HOME"
    [ -f "$DAGSTER_HOME/dagster.yaml" ] || cp "$here/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
fi

exec "$@"
