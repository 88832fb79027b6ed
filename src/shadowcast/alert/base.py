"""The Notifier protocol: where alerts go."""

from __future__ import annotations

from typing import Protocol

from shadowcast.records import Alert


class Notifier(Protocol):
    """Delivers an alert; raises AlertError-free: failures are logged and counted."""

    name: str

    def send(self, alert: Alert) -> bool:
        """True when the alert was delivered."""
        ...
