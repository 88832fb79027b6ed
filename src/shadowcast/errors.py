"""The shadowcast exception tree.

Every error that crosses a stage boundary is one of these; library exceptions are
translated where they enter (``raise StoreError(...) from exc``). The command line
prints one line and exits with the class's ``exit_code`` (2: bad input, 1: runtime)::

    ShadowcastError                                                  exit
    ├── ConfigError          a settings file or override is invalid    2
    ├── DataError            input data is malformed (file, problem)   2
    │   ├── TopologyError    a topology file is unreadable/inconsistent 2
    │   └── DemandError      a demand series file is unreadable/...    2
    ├── DecodeError          a flow-export packet could not be decoded 2
    ├── StoreError           the store rejected a read or write        1
    ├── ForecastError        a forecaster was misused (bad horizon)    2
    ├── PlanError            no feasible plan, or it failed its checks 2
    ├── ActuationError       applying a plan failed (after rollback)   1
    │   └── RollbackError    ... and the state could not be restored   1
    ├── ProbeError           a shadow tunnel or STAMP session failed   1
    └── MissingExtraError    an optional dependency is not installed   1
"""

from __future__ import annotations

from shadowcast import exitcodes


class ShadowcastError(Exception):
    """Base class for all shadowcast errors."""

    exit_code: int = exitcodes.USAGE


class ConfigError(ShadowcastError):
    """A settings file or environment override is invalid."""


class DataError(ShadowcastError):
    """Input data is malformed."""


class TopologyError(DataError):
    """A topology file is unreadable or inconsistent."""


class DemandError(DataError):
    """A demand-series file is unreadable or inconsistent."""


class DecodeError(ShadowcastError):
    """A flow-export packet could not be decoded."""


class StoreError(ShadowcastError):
    """The store rejected a read or a write."""

    exit_code = exitcodes.FAILURE


class ForecastError(ShadowcastError):
    """A forecaster was misused."""


class PlanError(ShadowcastError):
    """No feasible plan, or a plan failed its checks."""


class ActuationError(ShadowcastError):
    """Applying a plan failed; the previous state was restored."""

    exit_code = exitcodes.FAILURE


class RollbackError(ActuationError):
    """A rollback did not restore the previous state exactly (what differs is named)."""


class ProbeError(ShadowcastError):
    """A shadow tunnel or probe session failed."""

    exit_code = exitcodes.FAILURE


class MissingExtraError(ShadowcastError):
    """A command needs an optional dependency that is not installed."""

    exit_code = exitcodes.FAILURE
