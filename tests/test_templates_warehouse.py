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
                 "created_at timestamptz, message text, error_text text, is_error boolean, is_deleted boolean)")
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    p = "%s" if postgres else "?"
    rows = []
    for i in range(600):
        kind = i % 3
        message = (f"page.goto: Timeout {30000 + i % 7}ms exceeded" if kind == 0 else
                   f"Connection refused by upstream {WORDS[(i // 3) % len(WORDS)]} server"  # 8 words: one template
                   if kind == 1 else f"browser queue timeout for worker {i % 5} slot {i % 13}")
        rows.append((f"e{i:04d}", "error_browser_queue_timeout", ["posting", "learn"][i % 2],
                     start + timedelta(seconds=37 * i), message, None, i % 17 != 5, i % 53 == 7))
    cur = conn.cursor() if postgres else conn
    cur.executemany(f"insert into marts.fct_system_events values ({', '.join([p] * 8)})", rows)


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
