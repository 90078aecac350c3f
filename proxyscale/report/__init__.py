"""Proxy-vs-target report: `build` (inputs -> report.json: the analysis, predictions, frontier) and
`render` (report.md + self-contained report.html + figure files). Imports no torch."""
