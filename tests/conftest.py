"""Shared fixtures: where the third-party data lives, temporary stores; hypothesis profiles.

Hypothesis profiles (``HYPOTHESIS_PROFILE``, default ``ci``):

* ``ci`` — what ``make test`` and CI run: derandomized (the examples follow from the test's
  source, so the same commit always gives the same result), a fixed number of examples, no
  deadline (timing must not decide a verdict on a shared machine) and no example database.
* ``fuzz`` — what ``make fuzz`` runs on the tests marked ``fuzz``: many more examples, a fresh
  random seed per run. Every failure it finds becomes an ``@example(...)`` in the suite.

A test that states ``max_examples`` itself keeps it under both profiles; the property tests
over hostile input (marker ``fuzz``) leave it to the profile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Verbosity, settings

from shadowcast.datasets.locate import find_data_dir

REPO = Path(__file__).resolve().parents[1]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=None,
    max_examples=1000,
    deadline=None,
    print_blob=True,
    verbosity=Verbosity.normal,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared third-party data (``$SHADOWCAST_DATA`` or ``../shared/data``)."""
    d = find_data_dir()
    if d is None:
        pytest.skip("third-party data not found: set SHADOWCAST_DATA or provide ../shared/data")
    return d


@pytest.fixture(autouse=True, scope="session")
def _log_records_built() -> None:
    """Every ``shadowcast`` log record at INFO and above is built in every test, whatever ran
    before: a bad ``extra=`` key (one a LogRecord already has) raises KeyError only when the
    level is enabled, so leaving the level to test order once let CI fail where a laptop passed."""
    import logging

    logging.getLogger("shadowcast").setLevel(logging.INFO)
