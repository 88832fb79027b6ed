"""The Notifier protocol: where alerts go, and where their resolutions follow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from shadowcast.records import Alert


class Notifier(Protocol):
    """Delivers alerts; never raises: failures are logged and counted."""

    name: str

    def send(self, alert: Alert) -> bool:
        """A new alert; True when it was delivered."""
        ...

    def resolve(self, alert: Alert, at: np.datetime64) -> bool:
        """``alert``'s condition cleared at ``at`` (the service's clock)."""
        ...

    def refresh(self, firing: Sequence[Alert], now: np.datetime64) -> None:
        """Called every step with the alerts still firing (receivers that expire alerts
        not re-sent, as Alertmanager does, get them again)."""
        ...
