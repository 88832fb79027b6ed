"""Feedback: what happened against what was predicted (the forecast ledger)."""
