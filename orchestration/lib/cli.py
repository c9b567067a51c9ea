"""``ops-warehouse``: the non-Dagster tasks (simulate, extract, demo, bench, alerts, admin)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ops-warehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from orchestration.lib.simulator import cli as simulator_cli

    simulator_cli.add_parser(sub)

    from orchestration.lib.extract import cli as extract_cli

    extract_cli.add_parser(sub)

    from orchestration.lib import demo

    demo.add_parser(sub)

    from orchestration.lib.bench import cli as bench_cli

    bench_cli.add_parser(sub)

    from orchestration.lib.alerts import cli as alerts_cli

    alerts_cli.add_parser(sub)

    from orchestration.lib.admin import cli as admin_cli

    admin_cli.add_parser(sub)
    return parser


# commands that read an existing warehouse: on a DuckDB file that does not exist they stop with one
# line instead of creating an empty file (``alerts check`` needs one only for custom rules: it checks)
NEEDS_WAREHOUSE = {("alerts", "run"), ("alerts", "status"), ("alerts", "replay"), ("alerts", "silence"),
                   ("alerts", "silences")}


def main(argv: list[str] | None = None) -> int:
    from orchestration.lib.db import ConnectError
    from orchestration.lib.extract.engine import LockWaitTimeout
    from orchestration.lib.settings import mask_secrets

    args = build_parser().parse_args(argv)
    try:
        if (args.command, getattr(args, "alerts_command", None)) in NEEDS_WAREHOUSE:
            _require_warehouse()
        return int(args.func(args) or 0)
    # bad input, a setting that makes no sense, a database that cannot be reached: one line, not
    # a traceback (and never a password: the messages are masked once more here)
    except (ValueError, FileNotFoundError, ConnectError, LockWaitTimeout) as exc:
        print(f"ops-warehouse {args.command}: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2


def _require_warehouse() -> None:
    from orchestration.lib import settings

    warehouse = settings.warehouse_location()
    if not warehouse.is_postgres and warehouse.path is not None and not warehouse.path.is_file():
        raise FileNotFoundError(f"the DuckDB warehouse {warehouse.path} does not exist (set OPS_WAREHOUSE_URL, "
                                f"or run the pipeline first)")


if __name__ == "__main__":
    sys.exit(main())
