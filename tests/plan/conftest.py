"""Small hand-made topologies for planner tests."""

from __future__ import annotations

import pytest
from plan_helpers import bidir

from shadowcast.records import Topology


@pytest.fixture
def square() -> Topology:
    """A-B direct (10 Mbit/s) and A-C-B, A-D-B (10 Mbit/s each); capacities in bit/s."""
    return bidir(
        "square",
        [("A", "B", 10e6), ("A", "C", 10e6), ("C", "B", 10e6), ("A", "D", 10e6), ("D", "B", 10e6)],
        {"A": (0.0, 0.0), "B": (1.0, 0.0), "C": (0.5, 0.5), "D": (0.5, -3.0)},
    )
