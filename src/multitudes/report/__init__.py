"""The result table and report.html with its figures."""
