"""Custom SQL alert rules are read-only and bounded, on both warehouses: one statement, no write
(refused when the rules file is loaded, and by the engine if it got that far: a read-only,
rolled-back transaction on PostgreSQL; one SELECT whose plan writes nothing, rolled back, on
DuckDB), a timeout; ``alerts check`` plans every custom query against the warehouse and names
``path:line``; ``alerts run`` exits non-zero naming a rule it could not evaluate."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from dbquery import query_location

from orchestration.lib.alerts import ledger
from orchestration.lib.alerts.ledger import observe
from orchestration.lib.alerts.rules import RulesFileError, RuleSpec, Threshold, load_rules
from orchestration.lib.db import connect
from orchestration.lib.settings import Location

NOW = datetime(2026, 9, 1, 12, tzinfo=timezone.utc)
DELETE_CTE = "with d as (delete from raw._quarantine returning 1) select 'x' as subject, count(*) as value from d"
TWO_STATEMENTS = "select 'y', 0; create table raw.x (a int)"


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, pg_databases) -> Location:
    loc = Location.parse(str(tmp_path / "wh.duckdb") if request.param == "duckdb" else pg_databases.new("wh"))
    with connect(loc) as conn:
        for stmt in ("create schema raw", "create table raw._quarantine (reason text)",
                     "insert into raw._quarantine values ('kept')", "create schema marts",
                     "create table marts.fct_system_events (job_name text, is_error boolean, created_at timestamptz)",
                     "insert into marts.fct_system_events values ('poster', true, '2026-09-01 11:30:00+00')"):
            conn.execute(stmt)
    return loc


def sql_rule(name: str, sql: str, line: int | None = None) -> RuleSpec:
    return RuleSpec(name=name, kind="sql", condition=Threshold(">", 0), window=timedelta(hours=1), sql=sql, line=line)


GOOD = sql_rule("poster_errors", "select job_name, count(*) from marts.fct_system_events "
                                 "where is_error and created_at > :window_start and created_at <= :now group by 1")


def untouched(loc: Location) -> bool:
    """The quarantined row is still there and raw has no new table."""
    tables = query_location(loc, "select table_name from information_schema.tables where table_schema = 'raw' "
                                 "order by 1")
    return query_location(loc, "select count(*) from raw._quarantine") == [(1,)] and tables == [("_quarantine",)]


def write_rules(tmp_path, sql: str, name: str = "attack") -> tuple:
    path = tmp_path / "rules.yml"
    body = "\n".join("      " + line for line in sql.splitlines())
    path.write_text(f"rules:\n  - name: good\n    sql: select 'a', 1\n    condition: '> 0'\n    window: 1h\n"
                    f"  - name: {name}\n    kind: sql\n    sql: |\n{body}\n    condition: '> 0'\n    window: 1h\n")
    return path, 8  # the line of the second rule's sql


@pytest.mark.parametrize("sql", [DELETE_CTE, TWO_STATEMENTS, "select 'x', 1 into raw.copy",
                                 "select 1, 2 -- fine\n;\n/* ; */ drop table raw._quarantine"])
def test_writes_and_several_statements_are_refused_when_the_file_loads(tmp_path, sql):
    path, line = write_rules(tmp_path, sql)
    with pytest.raises(RulesFileError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}:{line}: rule 'attack'"), err.value


@pytest.mark.parametrize("lexical_check", [True, False], ids=["as_loaded", "engine_only"])
def test_both_attacks_are_refused_by_the_warehouse_and_the_other_rules_still_run(warehouse, monkeypatch,
                                                                                  lexical_check):
    """Even if a rule got past the file check (``engine_only``: the check is switched off), the
    engine refuses it: no row deleted, no table created, an error naming the rule."""
    if not lexical_check:
        monkeypatch.setattr(ledger, "sql_query_problem", lambda sql: None)
    rules = [sql_rule("delete_cte", DELETE_CTE), GOOD, sql_rule("two_statements", TWO_STATEMENTS)]
    obs = observe(warehouse, rules, NOW)
    assert set(obs.errors) == {"delete_cte", "two_statements"}, obs.errors
    for name, error in obs.errors.items():
        assert f"rule '{name}' refused" in error, error
    assert [(c.rule, c.subject, c.value) for c in obs.conditions] == [("poster_errors", "poster", 1.0)]
    assert untouched(warehouse)


def test_a_slow_query_is_stopped_by_the_timeout(warehouse, monkeypatch):
    monkeypatch.setenv("OPS_ALERT_SQL_TIMEOUT_SECONDS", "0.5")
    slow = ("select 'slow', 1 from pg_sleep(20)" if warehouse.is_postgres else
            "select 'slow', count(*) from range(100000) a, range(100000) b, range(100000) c")
    started = time.monotonic()
    obs = observe(warehouse, [sql_rule("slow", slow), GOOD], NOW)
    assert time.monotonic() - started < 10
    assert "rule 'slow' timed out after 0.5 s" in obs.errors["slow"], obs.errors
    assert [c.rule for c in obs.conditions] == ["poster_errors"]


def test_alerts_check_plans_each_rule_and_names_path_and_line(warehouse, tmp_path, monkeypatch, capsys):
    from orchestration.lib.cli import main

    monkeypatch.setenv("OPS_WAREHOUSE_URL", warehouse.dsn or str(warehouse.path))
    rules = tmp_path / "rules.yml"
    rules.write_text("""rules:
  - name: poster_errors
    sql: |
      select job_name, count(*) from marts.fct_system_events
      where is_error and created_at > :window_start and created_at <= :now group by 1
    condition: "> 3"
    window: 1h
  - name: typo
    sql: select job_name, count(*) from marts.fct_system_event group by 1
    condition: "> 3"
    window: 1h
  - name: bad_function
    metric: {relation: marts.fct_system_events, value: "cuont(*)", subject: job_name, time_column: created_at}
    condition: "> 3"
    window: 1h
""")
    assert main(["alerts", "check", "--rules", str(rules)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"{rules}:8: rule 'typo'") and "fct_system_event" in err[0], err
    assert err[1].startswith(f"{rules}:12: rule 'bad_function'") and "cuont" in err[1], err
    assert main(["alerts", "check", "--rules", str(rules), "--offline"]) == 0

    good = tmp_path / "good.yml"
    good.write_text(rules.read_text().split("  - name: typo")[0])
    assert main(["alerts", "check", "--rules", str(good)]) == 0
    assert "1 of 1 custom rules plan" in capsys.readouterr().out

    attack, line = write_rules(tmp_path, DELETE_CTE)
    assert main(["alerts", "check", "--rules", str(attack)]) == 2
    assert f"{attack}:{line}: rule 'attack'" in capsys.readouterr().err
    assert untouched(warehouse)


def test_alerts_run_exits_non_zero_naming_the_rule_it_could_not_evaluate(warehouse, tmp_path, monkeypatch, capsys):
    from orchestration.lib.cli import main

    monkeypatch.setenv("OPS_WAREHOUSE_URL", warehouse.dsn or str(warehouse.path))
    monkeypatch.setenv("OPS_ALERT_FILE_DIR", str(tmp_path / "sent"))
    monkeypatch.setenv("OPS_ALERT_SILENCES_FILE", str(tmp_path / "none.yml"))
    rules = tmp_path / "rules.yml"
    rules.write_text("""rules:
  - name: poster_errors
    sql: select job_name, count(*) from marts.fct_system_events where is_error group by 1
    condition: "> 0"
    window: 1h
  - name: broken
    sql: select job_name, count(*) from marts.no_such_mart group by 1
    condition: "> 0"
    window: 1h
""")
    monkeypatch.setenv("OPS_ALERT_RULES_FILE", str(rules))
    assert main(["alerts", "run", "--only", "poster_errors,broken", "--no-deliver",
                 "--now", NOW.isoformat()]) == 1
    captured = capsys.readouterr()
    assert f"{rules}:6: rule broken not evaluated" in captured.err and "no_such_mart" in captured.err, captured
    assert "1 rules, 1 firing" in captured.out, captured.out  # the good rule was evaluated and recorded
    assert query_location(warehouse, "select rule, subject from alerts.ledger") == [("poster_errors", "poster")]
    assert main(["alerts", "run", "--only", "poster_errors", "--no-deliver", "--now", NOW.isoformat()]) == 0


def test_a_missing_duckdb_warehouse_is_an_error_not_a_new_empty_file(tmp_path, monkeypatch, capsys):
    from orchestration.lib.cli import main

    missing = tmp_path / "nowhere" / "warehouse.duckdb"
    monkeypatch.setenv("OPS_WAREHOUSE_URL", str(missing))
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - name: a\n    sql: select 'a', 1\n    condition: '> 0'\n    window: 1h\n")
    for args in (["alerts", "run"], ["alerts", "check", "--rules", str(rules)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(missing) in err and "does not exist" in err, err
    assert not missing.exists() and not missing.parent.exists()
