"""Data quality: Great Expectations suites, the event payload contract."""
