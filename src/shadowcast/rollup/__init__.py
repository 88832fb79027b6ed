"""Rollup: flows become demand between the routers of the topology, per step and kind."""
