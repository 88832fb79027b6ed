"""Application behaviour profiler: who is talking, with what application, on which path.

The life of a flow here: :mod:`identify` fills ``app``/``category``/``app_source``/
``app_confidence`` layer by layer (exporter name, nDPI, operator rules, behavioural model),
:mod:`where` maps addresses and interfaces to sites, regions and edges, :mod:`series`
turns the flows into per-minute behaviour series (rolled up to 5 minutes and 1 hour) and
:mod:`events` reports application paths that appear or come back.
"""

from __future__ import annotations
