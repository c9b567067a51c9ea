"""``ops-warehouse admin roles``: create the least-privilege PostgreSQL roles (idempotent)."""

from __future__ import annotations

import argparse
import os

import psycopg

from orchestration.lib.settings import Location


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("admin", help="administration: least-privilege PostgreSQL roles")
    sub = p.add_subparsers(dest="admin_command", required=True)
    roles = sub.add_parser(
        "roles", help="create or update the roles ops_source_reader, ops_loader, ops_analyst, ops_alert_evaluator",
        description="Connect as an administrator (a role that may create roles and own the warehouse) and "
                    "create or update the least-privilege roles. Passwords come from OPS_ROLE_PASSWORD_<ROLE> "
                    "(SOURCE_READER, LOADER, ANALYST, ALERT_EVALUATOR) and are never printed. Idempotent.")
    roles.add_argument("--warehouse-url", default=os.environ.get("OPS_WAREHOUSE_URL"),
                       help="admin DSN of the warehouse database (default $OPS_WAREHOUSE_URL)")
    roles.add_argument("--source-url", default=os.environ.get("OPS_SOURCE_URL"),
                       help="admin DSN of the source database (default $OPS_SOURCE_URL; "
                            "with --no-source the source reader is not set up)")
    roles.add_argument("--no-source", action="store_true", help="set up the warehouse roles only")
    roles.add_argument("--role-prefix", default="ops_", help="role names are <prefix>source_reader, … (default ops_)")
    roles.add_argument("--nologin-without-password", action="store_true",
                       help="a role without OPS_ROLE_PASSWORD_<ROLE> is NOLOGIN (default: LOGIN, for "
                            "trust/peer/cert authentication in pg_hba.conf)")
    roles.set_defaults(func=run_roles)


def run_roles(args: argparse.Namespace) -> int:
    from orchestration.lib.admin.roles import RoleNames, setup_roles

    if not args.warehouse_url:
        raise ValueError("give --warehouse-url (or set OPS_WAREHOUSE_URL): an admin postgresql:// DSN")
    if not args.no_source and not args.source_url:
        raise ValueError("give --source-url (or set OPS_SOURCE_URL), or --no-source")
    warehouse = Location.parse(args.warehouse_url)
    source = None if args.no_source else Location.parse(args.source_url)
    names = RoleNames.with_prefix(args.role_prefix)
    try:
        report = setup_roles(warehouse, source, names, login_without_password=not args.nologin_without_password)
    except psycopg.Error as exc:  # e.g. not allowed to create roles: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"roles not set up (nothing committed on the database that failed): "
                         f"{type(exc).__name__}: {first}") from None
    where = f"warehouse {warehouse.redacted()}" + ("" if source is None else f", source {source.redacted()}")
    print(f"roles on {where}:")
    for line in report:
        print(f"  {line}")
    return 0
