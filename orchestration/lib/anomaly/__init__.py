"""Anomaly scoring on hourly count series (plain functions; see scoring.py and series.py)."""
