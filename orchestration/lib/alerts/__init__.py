"""Alerts: rules, the alert ledger (firing -> resolved), and durable delivery to channels."""
