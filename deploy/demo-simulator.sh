#!/bin/sh
# The `simulator` service of the `demo` profile: writes a history into the bot's database once
# (OPS_DEMO_HISTORY_DAYS days, default 2), then keeps appending events in real time
# (OPS_DEMO_RATE events per second, default 2), so `docker compose --profile demo up` shows
# extracts, models and alerts moving. A restart follows on without rewriting the history.
set -eu
: "${OPS_SOURCE_URL:?OPS_SOURCE_URL (or OPS_SOURCE_URL_FILE) must name the demo bot database}"

has_history="$(python - <<'PY'
import os
import psycopg
with psycopg.connect(os.environ["OPS_SOURCE_URL"], connect_timeout=10) as conn:
    row = conn.execute("select to_regclass('system_events') is not null").fetchone()
    print("yes" if row[0] and conn.execute("select exists (select from system_events)").fetchone()[0] else "no")
PY
)"
if [ "$has_history" = no ]; then
    ops-warehouse simulate --days "${OPS_DEMO_HISTORY_DAYS:-2}" --seed "${OPS_DEMO_SEED:-42}"
fi
echo "demo-simulator: history in place; following" >&2
exec ops-warehouse simulate --follow --rate "${OPS_DEMO_RATE:-2}" --seed "${OPS_DEMO_SEED:-42}"
