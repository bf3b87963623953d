"""Locust scenarios and SLO gates, run in a subprocess. Not built yet (issue 5)."""
