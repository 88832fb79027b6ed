"""The dashboard: jinja2 pages over the API, uPlot charts (vendored, MIT: static/uplot)."""
