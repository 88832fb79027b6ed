"""The living service: every stage composed on one clock (wiring.py builds, loop.py runs)."""
