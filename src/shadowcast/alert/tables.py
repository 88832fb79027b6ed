"""The alert stage's store rows (``alerts``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shadowcast.records import Alert
from shadowcast.store.arrow import ts_array


def alerts_table(alerts: Sequence[Alert]) -> pa.Table:
    return pa.table(
        {
            "issued": ts_array(np.array([a.issued for a in alerts], dtype="datetime64[s]")),
            "at": ts_array(np.array([a.at for a in alerts], dtype="datetime64[s]")),
            "name": pa.array([a.name for a in alerts]),
            "subject": pa.array([a.subject for a in alerts]),
            "severity": pa.array([a.severity for a in alerts]),
            "value": pa.array([a.value for a in alerts], type=pa.float64()),
            "threshold": pa.array([a.threshold for a in alerts], type=pa.float64()),
            "lead_s": pa.array([a.lead_s for a in alerts], type=pa.int64()),
            "message": pa.array([a.message for a in alerts]),
        }
    )
