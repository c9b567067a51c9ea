"""The bot owners' own SQL, verbatim from their improvement checklist ("ERROR ANALYSIS QUERIES").

The marts reproduce these; tests run the originals on the source and compare. ``pinned`` swaps
``NOW()`` for a fixed instant so both sides look at the same window.
"""

from __future__ import annotations

from datetime import datetime

MOST_COMMON_ERRORS_LAST_7_DAYS = """
SELECT 
  event_type,
  COUNT(*) as error_count,
  COUNT(DISTINCT DATE(created_at)) as days_with_errors
FROM system_events
WHERE created_at > NOW() - INTERVAL '7 days'
  AND severity IN ('error', 'critical')
GROUP BY event_type
ORDER BY error_count DESC;
"""

JOB_FAILURE_RATES = """
SELECT 
  job_name,
  COUNT(*) FILTER (WHERE last_run_status = 'failure') as failures,
  COUNT(*) FILTER (WHERE last_run_status = 'success') as successes,
  ROUND(100.0 * COUNT(*) FILTER (WHERE last_run_status = 'failure') / COUNT(*), 2) as failure_rate_pct
FROM job_heartbeats
WHERE updated_at > NOW() - INTERVAL '7 days'
GROUP BY job_name
HAVING COUNT(*) FILTER (WHERE last_run_status = 'failure') > 0
ORDER BY failure_rate_pct DESC;
"""

SHUTDOWN_CAUSES = """
SELECT 
  event_type,
  event_data->>'component' as component,
  COUNT(*) as shutdown_count
FROM system_events
WHERE event_type LIKE '%shutdown%' 
   OR event_type LIKE '%block%'
   OR severity = 'critical'
GROUP BY event_type, component
ORDER BY shutdown_count DESC;
"""


def pinned(sql: str, as_of: datetime) -> str:
    """The query with NOW() replaced by a fixed timestamptz (PostgreSQL and DuckDB)."""
    return sql.replace("NOW()", f"timestamptz '{as_of.isoformat()}'").rstrip().rstrip(";")
