"""Error templates in the warehouse: every error event mined exactly once, same ids on both targets."""

from __future__ import annotations

from orchestration.lib.templates.warehouse import refresh_templates


def test_templates_mine_each_error_event_once_with_the_same_ids_on_both_targets(simulated_warehouses):
    sw = simulated_warehouses
    ids = {}
    for kind, wh in sw.warehouses.items():
        n_errors = sw.query(kind, "select count(*) from marts.fct_system_events "
                                  "where is_error and not is_deleted")[0][0]
        first = sw.builds[kind].templates  # build_marts mined once, between its two dbt builds
        assert first.events_mined == n_errors > 1000
        assert first.templates_total == len(first.new_templates) > 10
        again = refresh_templates(wh, sw.as_of)
        assert (again.events_mined, again.new_templates) == (0, []), "a rerun mines nothing twice"
        assert sw.query(kind, "select count(*), count(distinct event_id) from marts.error_event_templates") == [
            (n_errors, n_errors)]
        assert sw.query(kind, "select sum(n_events) from marts.mart_error_templates")[0][0] == n_errors
        assert sw.query(kind, "select count(*) from marts.mart_error_templates where is_new")[0][0] == 0
        ids[kind] = sorted(sw.query(kind, "select template_id, template, n_events, n_events_7d, n_events_30d "
                                          "from marts.mart_error_templates"))
    assert ids["duckdb"] == ids["postgres"]


def test_messages_differing_only_in_values_share_a_template(simulated_warehouses):
    sw = simulated_warehouses
    refresh_templates(sw.warehouses["duckdb"], sw.as_of)
    rows = sw.query("duckdb", """
        select m.template_id, count(distinct f.message) as n_messages
        from marts.error_event_templates m join marts.fct_system_events f using (event_id)
        group by 1 order by 2 desc limit 1""")
    assert rows[0][1] > 50, "the largest template folds many distinct messages"


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def _fact_table(conn, postgres: bool) -> None:
    """A hand-made marts.fct_system_events (the columns the miner reads): 600 error events whose
    messages make templates generalise later in the run (ids assigned early are replaced), and
    non-error rows the miner must skip."""
    from datetime import datetime, timedelta, timezone

    conn.execute("create schema if not exists marts")
    conn.execute("create table marts.fct_system_events (event_id text, event_type text, job_name text, "
                 "created_at timestamptz, message text, error_text text, is_error boolean, is_deleted boolean, "
                 "_loaded_at timestamptz)")
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    p = "%s" if postgres else "?"
    rows = []
    for i in range(600):
        kind = i % 3
        message = (f"page.goto: Timeout {30000 + i % 7}ms exceeded" if kind == 0 else
                   f"Connection refused by upstream {WORDS[(i // 3) % len(WORDS)]} server"  # 8 words: one template
                   if kind == 1 else f"browser queue timeout for worker {i % 5} slot {i % 13}")
        rows.append((f"e{i:04d}", "error_browser_queue_timeout", ["posting", "learn"][i % 2],
                     start + timedelta(seconds=37 * i), message, None, i % 17 != 5, i % 53 == 7,
                     start + timedelta(hours=1 + i // 100)))
    cur = conn.cursor() if postgres else conn
    cur.executemany(f"insert into marts.fct_system_events values ({', '.join([p] * 9)})", rows)


def test_a_run_reads_only_the_events_loaded_since_the_last_one(pg_databases, tmp_path):
    """mined_through: the second run mines the events loaded after the first (and one merged
    again, with a new _loaded_at, is not mined twice); an unmined event stamped before the
    watermark — impossible in the pipeline, where _loaded_at only grows — shows it is not read."""
    from datetime import datetime, timezone

    from orchestration.lib.db import connect
    from orchestration.lib.settings import Location
    from orchestration.lib.templates import warehouse as tw

    for kind in ("duckdb", "postgres"):
        location = Location.parse(pg_databases.new("mt") if kind == "postgres" else str(tmp_path / "mt.duckdb"))
        with connect(location) as conn:
            _fact_table(conn, kind == "postgres")
        first = tw.refresh_templates(location, datetime(2026, 5, 2, tzinfo=timezone.utc))
        with connect(location) as conn:
            watermark = conn.execute("select mined_through from marts.error_template_state").fetchall()[0][0]
            conn.execute("update marts.fct_system_events set _loaded_at = cast('2026-05-03T00:00:00+00:00' as "
                         "timestamptz) where event_id = 'e0000'")
            conn.execute("insert into marts.fct_system_events values ('late', 'error_x', 'posting', "
                         "cast('2026-05-01T00:00:00+00:00' as timestamptz), 'old stamp', null, true, false, "
                         "cast('2026-05-01T00:00:00+00:00' as timestamptz))")
            conn.execute("insert into marts.fct_system_events values ('new1', 'error_x', 'posting', "
                         "cast('2026-05-02T23:00:00+00:00' as timestamptz), 'page.goto: Timeout 30001ms exceeded', "
                         "null, true, false, cast('2026-05-03T00:00:00+00:00' as timestamptz))")
        second = tw.refresh_templates(location, datetime(2026, 5, 3, tzinfo=timezone.utc))
        with connect(location) as conn:
            mined = {e for (e,) in conn.execute("select event_id from marts.error_event_templates").fetchall()}
            advanced = conn.execute("select mined_through from marts.error_template_state").fetchall()[0][0]
        assert watermark is not None and first.events_mined > 500, kind
        assert second.events_mined == 1 and "new1" in mined and "late" not in mined, kind
        assert advanced > watermark, kind


def test_mining_in_small_batches_writes_what_one_pass_writes(pg_databases, tmp_path, monkeypatch):
    """The first run over a large history reads it MINE_BATCH_ROWS at a time: with batches of 7
    events, the assignments (under the ids live at the end of the run, in mining order), the
    aliases and the mart are those of one batch holding everything, on both targets."""
    from datetime import datetime, timezone

    from orchestration.lib.db import connect
    from orchestration.lib.settings import Location
    from orchestration.lib.templates import warehouse as tw

    as_of = datetime(2026, 5, 2, tzinfo=timezone.utc)
    found = {}
    for kind in ("duckdb", "postgres"):
        for batch in (7, 1_000_000):
            location = Location.parse(pg_databases.new(f"t{batch}") if kind == "postgres"
                                      else str(tmp_path / f"w{batch}.duckdb"))
            with connect(location) as conn:
                _fact_table(conn, kind == "postgres")
            monkeypatch.setattr(tw, "MINE_BATCH_ROWS", batch)
            result = tw.refresh_templates(location, as_of)
            with connect(location) as conn:
                assigned = conn.execute("select event_id, template_id from marts.error_event_templates").fetchall()
                aliases = sorted(conn.execute("select * from marts.error_template_aliases").fetchall())
                mart = sorted(conn.execute("select template_id, template, n_events, n_events_7d, n_events_30d, "
                                           "is_new from marts.mart_error_templates").fetchall())
            found[kind, batch] = (result.events_mined, result.new_templates, assigned, aliases, mart)
        assert found[kind, 7] == found[kind, 1_000_000], kind
        events_mined, _, assigned, aliases, _ = found[kind, 7]
        assert events_mined == len(assigned) == sum(1 for i in range(600) if i % 17 != 5 and i % 53 != 7)
        assert [e for e, _ in assigned] == sorted(e for e, _ in assigned), "in mining order"
        assert aliases, "templates generalised during the run (so ids had to be resolved at its end)"
        live = {t for t, *_ in found[kind, 7][4]}
        assert {t for _, t in assigned} <= live, "every assignment under a live id"
    assert found["duckdb", 7] == found["postgres", 7]
