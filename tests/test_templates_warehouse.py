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
