"""The shadowcast exception tree.

Every error that crosses a stage boundary is one of these; library exceptions are
translated where they enter (``raise StoreError(...) from exc``)::

    ShadowcastError
    ├── ConfigError          a settings file or override is invalid (names the field)
    ├── DataError            input data is malformed (names the file and what is wrong)
    │   ├── TopologyError    a topology file is unreadable or inconsistent
    │   └── DemandError      a demand series file is unreadable or inconsistent
    ├── DecodeError          a flow-export packet could not be decoded
    ├── StoreError           the store rejected a read or write
    ├── ForecastError        a forecaster was misused (predict before fit, bad horizon)
    ├── PlanError            no feasible plan, or a plan failed its checks
    ├── ActuationError       applying a plan failed (after rollback)
    │   └── RollbackError    ... and the previous state could not be restored exactly
    └── ProbeError           a shadow tunnel or STAMP session failed
"""

from __future__ import annotations


class ShadowcastError(Exception):
    """Base class for all shadowcast errors."""


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


class ForecastError(ShadowcastError):
    """A forecaster was misused."""


class PlanError(ShadowcastError):
    """No feasible plan, or a plan failed its checks."""


class ActuationError(ShadowcastError):
    """Applying a plan failed; the previous state was restored."""


class RollbackError(ActuationError):
    """A rollback did not restore the previous state exactly (what differs is named)."""


class ProbeError(ShadowcastError):
    """A shadow tunnel or probe session failed."""
