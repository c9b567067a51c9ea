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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: a clear message, not a traceback
        print(f"ops-warehouse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
