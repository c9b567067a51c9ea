"""``ops-warehouse bench <name>``: benchmarks that print figures side by side (and --json PATH)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (figures side by side, ratios)")
    sub = p.add_subparsers(dest="bench", required=True)
    ex = sub.add_parser("extract", help="extract rows/s vs psql \\copy, both warehouse targets")
    ex.add_argument("--rows", type=int, default=1_000_000)
    ex.add_argument("--json", dest="json_path", help="also write the figures to this file")
    ex.add_argument("--pg-dsn", help="admin DSN used to create scratch databases "
                                     "(default OPS_BENCH_PG_DSN or postgres@127.0.0.1:5432)")
    ex.set_defaults(func=_extract)
    inc = sub.add_parser("incremental", help="hourly run (extract + build) after one bulk load of a 10M-event "
                                             "history vs a 100k one, per warehouse and density")
    inc.add_argument("--warehouse", default="duckdb",
                     help="duckdb, postgres or both comma-separated (default duckdb)")
    inc.add_argument("--density", default="real",
                     help="real (the bot's rate: history replicated back in time), dense (25x the rate: "
                          "~10M over 30 days) or both comma-separated (default real)")
    inc.add_argument("--small", type=int, default=100_000, help="events in the small history")
    inc.add_argument("--large", type=int, default=10_000_000, help="events in the large history")
    inc.add_argument("--seed", type=int, default=3)
    inc.add_argument("--json", dest="json_path", help="also write the figures to this file")
    inc.add_argument("--pg-dsn", help="admin DSN used to create the scratch databases (the source, PostgreSQL "
                                      "warehouses; default OPS_BENCH_PG_DSN or postgres@127.0.0.1:5432)")
    inc.set_defaults(func=_incremental)
    cc = sub.add_parser("change-capture", help="the hourly extract's extra cost of the hot window and of the "
                                               "full reconcile, at the month's volume and a multiple of it")
    cc.add_argument("--days", type=float, default=30, help="days simulated")
    cc.add_argument("--scales", default="1,10", help="comma-separated volume multiples (default 1,10)")
    cc.add_argument("--seed", type=int, default=3)
    cc.add_argument("--json", dest="json_path", help="also write the figures to this file")
    cc.add_argument("--pg-dsn", help="admin DSN used to create scratch databases")
    cc.set_defaults(func=_change_capture)
    det = sub.add_parser("detection", help="anomaly scorer vs static threshold and z-score on "
                                           "simulated incidents (precision, recall)")
    det.add_argument("--days", type=float, default=60, help="days simulated")
    det.add_argument("--seed", type=int, default=1)
    det.add_argument("--json", dest="json_path", help="also write the figures to this file")
    det.set_defaults(func=_detection)
    al = sub.add_parser("alerts", help="alert noise: the sensor replayed hourly over a simulated period, "
                                       "notifications matched to the injected incidents (recall, delay, noise)")
    al.add_argument("--days", type=float, default=30, help="days simulated")
    al.add_argument("--seed", type=int, default=5)
    al.add_argument("--warmup-hours", type=float, default=24,
                    help="leave out incidents and notifications of the first hours (default 24: the "
                         "anomaly scorer's history)")
    al.add_argument("--from-json", help="recompute the figures of a saved --json run (no simulation)")
    al.add_argument("--json", dest="json_path", help="also write the figures to this file")
    al.set_defaults(func=_alerts)
    lat = sub.add_parser("latency", help="event-to-notification latency of the alert fast lane: the simulator "
                                         "follows the clock into a PostgreSQL source with incidents while the "
                                         "lane runs (p50, p95, max per incident kind)")
    lat.add_argument("--minutes", type=float, default=20, help="minutes of following (default 20)")
    lat.add_argument("--interval", type=float, default=None,
                     help="seconds between fast-lane passes (default: OPS_ALERT_LANE_MINUTES, the lane's schedule)")
    lat.add_argument("--runs", type=int, default=1,
                     help="runs (seeds seed, seed + 1, …), the pass grid shifted by interval / runs each time: "
                          "per kind, p50 / p95 / max over every run's incident (default 1)")
    lat.add_argument("--seed", type=int, default=7)
    lat.add_argument("--history-hours", type=float, default=30, help="hours simulated before the run (default 30)")
    lat.add_argument("--json", dest="json_path", help="also write the figures to this file")
    lat.add_argument("--pg-dsn", help="admin DSN used to create scratch databases "
                                      "(default OPS_BENCH_PG_DSN or postgres@127.0.0.1:5432)")
    lat.set_defaults(func=_latency)


def _extract(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.extract_bench import main

    return main(args.rows, args.json_path, args.pg_dsn)


def _incremental(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.incremental_bench import main

    return main(_list(args.warehouse), _list(args.density), args.small, args.large, args.seed, args.json_path,
                args.pg_dsn)


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _change_capture(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.change_capture_bench import main

    return main(args.days, [float(s) for s in args.scales.split(",")], args.seed, args.json_path, args.pg_dsn)


def _detection(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.detection_bench import main

    return main(args.days, args.seed, args.json_path)


def _alerts(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.alerts_bench import main

    return main(args.days, args.seed, args.json_path, args.warmup_hours, args.from_json)


def _latency(args: argparse.Namespace) -> int:
    from orchestration.lib.bench.latency_bench import main

    from orchestration.lib.settings import DEFAULT_ALERT_LANE_MINUTES, alert_lane_minutes

    interval = args.interval if args.interval is not None else 60 * (alert_lane_minutes() or DEFAULT_ALERT_LANE_MINUTES)
    if args.runs < 1 or interval <= 0:
        raise SystemExit("bench latency: --runs must be at least 1 and --interval positive")
    return main(args.minutes, interval, args.seed, args.json_path, args.pg_dsn, args.history_hours, args.runs)
