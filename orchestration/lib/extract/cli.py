"""``ops-warehouse extract``: run the extraction outside Dagster (ops scripts, backfills)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from orchestration.lib import settings
from orchestration.lib.extract.engine import ExtractRequest, extract_table
from orchestration.lib.extract.raw_schema import TABLES
from orchestration.lib.settings import Location


def _ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("extract", help="extract source tables into the warehouse raw schema")
    p.add_argument("--source", help="postgresql:// DSN or DuckDB path (default: OPS_SOURCE_URL)")
    p.add_argument("--warehouse", help="postgresql:// DSN or DuckDB path (default: OPS_WAREHOUSE_URL)")
    p.add_argument("--table", action="append", choices=sorted(TABLES), help="repeatable; default: all")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full-refresh", action="store_true", help="re-read whole tables")
    mode.add_argument("--backfill", nargs=2, metavar=("START", "END"), type=_ts,
                      help="re-read the cursor range [START, END) (ISO timestamps, UTC if no zone)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Location.parse(args.source) if args.source else settings.source_location()
    warehouse = Location.parse(args.warehouse) if args.warehouse else settings.warehouse_location()
    if args.backfill:
        request = ExtractRequest(mode="backfill", backfill_start=args.backfill[0], backfill_end=args.backfill[1])
    else:
        request = ExtractRequest(mode="full_refresh" if args.full_refresh else "incremental")
    print(f"source {source.redacted()} -> warehouse {warehouse.redacted()} ({request.mode})")
    for table in args.table or list(TABLES):
        r = extract_table(source, warehouse, table, request)
        print(f"  {table:45s} read {r.rows_read:>9,} new {r.rows_inserted:>9,} changed {r.rows_updated:>7,} "
              f"deleted {r.rows_marked_deleted:>5,} quarantined {r.rows_quarantined:>5,} "
              f"{r.seconds:6.2f}s cursor {r.cursor_after}")
    return 0
