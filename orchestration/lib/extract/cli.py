"""``ops-warehouse extract``: run the extraction outside Dagster (ops scripts, backfills, reconciles)."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime, timezone

from orchestration.lib import settings
from orchestration.lib.extract.engine import ExtractRequest, extract_table, record_failure
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
                      help="re-read the rows whose day column is in [START, END) (ISO timestamps, UTC if no zone)")
    reconcile = p.add_mutually_exclusive_group()
    reconcile.add_argument("--reconcile", dest="reconcile", action="store_const", const=True, default=None,
                           help="compare every day with the source now and re-read the days that differ")
    reconcile.add_argument("--no-reconcile", dest="reconcile", action="store_const", const=False,
                           help="skip the full reconcile even if it is due")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Location.parse(args.source) if args.source else settings.source_location()
    warehouse = Location.parse(args.warehouse) if args.warehouse else settings.warehouse_location()
    if args.backfill:
        request = ExtractRequest(mode="backfill", backfill_start=args.backfill[0], backfill_end=args.backfill[1],
                                 reconcile=args.reconcile)
    else:
        request = ExtractRequest(mode="full_refresh" if args.full_refresh else "incremental",
                                 reconcile=args.reconcile)
    if not source.is_postgres and not (source.path and source.path.exists()):
        # nothing to extract from at all: a setup error (exit 2), not one table's failure
        raise FileNotFoundError(f"source DuckDB file not found: {source.path}")
    print(f"source {source.redacted()} -> warehouse {warehouse.redacted()} ({request.mode})")
    run_id = uuid.uuid4().hex[:12]
    failed = 0
    for table in args.table or list(TABLES):
        try:
            r = extract_table(source, warehouse, table, request, run_id=run_id)
        except Exception as exc:  # one table's failure never stops the others
            failed += 1
            record_failure(warehouse, table, run_id, str(exc))
            print(f"  {table:45s} FAILED: {exc}", file=sys.stderr)
            continue
        print(f"  {table:45s} read {r.rows_read:>9,} new {r.rows_inserted:>9,} changed {r.rows_updated:>7,} "
              f"deleted {r.rows_marked_deleted:>5,} quarantined {r.rows_newly_quarantined:>5,} "
              f"(open {r.quarantine_open:,}) {r.seconds:6.2f}s cursor {r.cursor_after}")
        for report in r.reconciles:
            if report.differing:
                print(f"  {'':45s} reconcile ({report.scope}): re-read {', '.join(report.repairs)}"
                      + (f"; STILL DIFFERING: {', '.join(report.unresolved)}" if report.unresolved else ""))
        for warning in r.drift.warnings:
            print(f"  {'':45s} warning: {warning}")
    return 1 if failed else 0
