"""The REST API (FastAPI) over the living service: /api/v1, /metrics, the dashboard."""
