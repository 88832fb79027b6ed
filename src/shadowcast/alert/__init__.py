"""Alerting: capacity rules over predicted utilisation, and notifiers."""
