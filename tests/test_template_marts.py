"""The marts reading the mined error templates (dbt tag ``after_templates``), on the simulated
month built by ``build_marts`` on both targets (session fixture ``simulated_warehouses``):
the same numbers on DuckDB and PostgreSQL, counts equal to a direct SQL count, ids that exist."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

TEMPLATE_MODELS = ("int_template_hour_counts", "int_template_hour_series", "mart_template_rank_7d_30d", "mart_template_correlation")

RANK_COLUMNS = (
    "window_days, window_start, window_end, template_id, template, n_events, share_of_errors, template_rank, "
    "n_events_prev_window, change_vs_prev_window, pct_change_vs_prev_window, is_riser, trend, first_seen_at, "
    "last_seen_at, template_first_seen_at, is_new, error_families, job_names, example_message"
)
CORRELATION_COLUMNS = (
    "series_a, series_b, template_a, template_b, n_hours, n_hours_a, n_hours_b, n_hours_both, support, lift, "
    "npmi, pearson_diff_r, best_lag_hours, best_lag_r, n_lag_points, n_effective, fisher_z, p_value, q_value, "
    "a_leads_b, corr_rank, lead_rank"
)
SERIES_COLUMNS = "series_key, hour_index, hour_start, n_events, diff_events"


def _cell(value):
    """Comparable across engines: floats rounded, decimals and timestamps made uniform."""
    if isinstance(value, (float, Decimal)):
        return round(float(value), 9)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return value


def _rows(rows) -> list[tuple]:
    return sorted((tuple(_cell(v) for v in row) for row in rows),
                  key=lambda r: tuple((v is None, str(v)) for v in r))


def _as_of_sql(as_of) -> str:
    return f"cast('{as_of.isoformat()}' as timestamptz)"


def test_build_marts_builds_the_template_marts_after_mining(simulated_warehouses):
    for kind, build in simulated_warehouses.builds.items():
        assert build.core.ok and build.template_marts.ok, kind
        built = {uid.split(".")[-1]: status for uid, status, _ in build.template_marts.results
                 if uid.startswith("model.")}
        assert built == {m: "success" for m in TEMPLATE_MODELS}, kind
        assert not any(uid.split(".")[-1] in TEMPLATE_MODELS for uid, _, _ in build.core.results), \
            f"{kind}: the first dbt build must leave the template marts out"
        unit_tests = [uid for uid, status, _ in build.template_marts.results
                      if uid.startswith("unit_test.") and status == "pass"]
        assert len(unit_tests) >= 3, kind
        assert build.templates.events_mined > 1000
        print(f"\n{kind}: mined {build.templates.events_mined} events in {build.templates_seconds:.2f}s "
              f"({build.mining_events_per_second:,.0f} events/s); dbt {build.core.seconds:.1f}s + "
              f"{build.template_marts.seconds:.1f}s")


def test_every_dbt_unit_test_runs_and_passes_on_both_targets(simulated_warehouses):
    """The suite's one run of dbt's unit tests (production builds leave them out: dbt_build_args)."""
    import json

    from orchestration.lib.settings import DBT_PROJECT_DIR

    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    declared = set(manifest["unit_tests"])
    assert len(declared) >= 50
    for kind, build in simulated_warehouses.builds.items():
        ran = {uid: status for uid, status, _ in build.core.results + build.template_marts.results
               if uid.startswith("unit_test.")}
        assert set(ran) == declared, (kind, declared ^ set(ran))
        assert set(ran.values()) == {"pass"}, (kind, {u: st for u, st in ran.items() if st != "pass"})


@pytest.mark.parametrize("relation, columns", [
    ("marts.mart_template_rank_7d_30d", RANK_COLUMNS),
    ("marts.mart_template_correlation", CORRELATION_COLUMNS),
    ("intermediate.int_template_hour_series", SERIES_COLUMNS),
])
def test_duckdb_and_postgres_give_the_same_numbers(simulated_warehouses, relation, columns):
    sw = simulated_warehouses
    rows = {kind: _rows(sw.query(kind, f"select {columns} from {relation}")) for kind in sw.warehouses}
    assert rows["duckdb"], relation
    assert rows["duckdb"] == rows["postgres"]


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_top_template_of_the_week_has_the_directly_counted_events(simulated_warehouses, kind):
    sw = simulated_warehouses
    as_of = _as_of_sql(sw.as_of)
    top = sw.query(kind, """
        select template_id, n_events, template_rank, share_of_errors from marts.mart_template_rank_7d_30d
        where window_days = 7 order by template_rank, template_id limit 1""")
    template_id, n_events, rank, share = top[0]
    assert rank == 1
    direct = dict(sw.query(kind, f"""
        select coalesce(a.template_id, m.template_id) as template_id, count(*)
        from marts.error_event_templates m
        join marts.fct_system_events f on f.event_id = m.event_id
        left join marts.error_template_aliases a on a.old_id = m.template_id
        where f.created_at > {as_of} - interval '7 days' and f.created_at <= {as_of} and not f.is_deleted
        group by 1"""))
    assert n_events == direct[template_id] == max(direct.values())
    assert share == pytest.approx(n_events / sum(direct.values()))
    # and the Python mart's own 7-day count agrees
    assert sw.query(kind, f"select n_events_7d from marts.mart_error_templates where template_id = '{template_id}'") \
        == [(n_events,)]
    # the 30-day window ranks every template the miner counted in its 30 days
    counts_30d = dict(sw.query(kind, """
        select template_id, n_events from marts.mart_template_rank_7d_30d where window_days = 30"""))
    assert counts_30d == dict(sw.query(kind, """
        select template_id, n_events_30d from marts.mart_error_templates where n_events_30d > 0"""))


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_template_ids_of_the_marts_exist_in_mart_error_templates(simulated_warehouses, kind):
    sw = simulated_warehouses
    for relation, column in (("marts.mart_template_rank_7d_30d", "template_id"),
                             ("marts.mart_template_correlation", "series_a"),
                             ("marts.mart_template_correlation", "series_b"),
                             ("intermediate.int_template_hour_series", "series_key")):
        n_ids, n_missing = sw.query(kind, f"""
            select count(distinct x.{column}),
                   count(distinct case when t.template_id is null then x.{column} end)
            from {relation} x left join marts.mart_error_templates t on t.template_id = x.{column}""")[0]
        assert n_ids > 0 and n_missing == 0, (relation, column)


def test_template_series_cover_the_window_densely(simulated_warehouses):
    sw = simulated_warehouses
    n_series, n_rows, max_index, n_hours = sw.query("duckdb", """
        select count(distinct series_key), count(*), max(hour_index), count(distinct hour_start)
        from intermediate.int_template_hour_series""")[0]
    assert n_series >= 2
    assert n_hours == max_index + 1 == 24 * sw.days  # the simulated month fills the 30-day window
    assert n_rows == n_series * n_hours
    n_pairs = sw.query("duckdb", "select count(*) from marts.mart_template_correlation")[0][0]
    assert n_pairs == n_series * (n_series - 1)


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_template_pairs_lead_only_when_significant(simulated_warehouses, kind):
    """a_leads_b needs the same significance as the family matrix (ops_corr_significance): a q
    below 0.05 after Benjamini–Hochberg, not just a positive best lag (half the pairs by chance)."""
    sw = simulated_warehouses
    n_positive_lag, n_leads, n_bad, n_ranked = sw.query(kind, """
        select
            count(case when best_lag_hours > 0 then 1 end),
            count(case when a_leads_b then 1 end),
            count(case when a_leads_b and not (q_value < 0.05 and best_lag_hours > 0 and best_lag_r > 0) then 1 end),
            count(lead_rank)
        from marts.mart_template_correlation""")[0]
    assert n_bad == 0
    assert 0 < n_leads < n_positive_lag / 4, (n_leads, n_positive_lag)
    assert n_ranked == n_leads
    # both directions of a pair carry the same p and q
    (n_asymmetric,) = sw.query(kind, """
        select count(*) from marts.mart_template_correlation a
        join marts.mart_template_correlation b on b.series_a = a.series_b and b.series_b = a.series_a
        where a.q_value is distinct from b.q_value or a.p_value is distinct from b.p_value""")[0]
    assert n_asymmetric == 0
