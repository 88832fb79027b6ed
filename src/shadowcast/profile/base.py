"""The profile stage's pluggable boundary: a behavioural model (flows -> categories)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Prediction:
    """One category and its probability per flow."""

    category: npt.NDArray[np.object_]
    confidence: npt.NDArray[np.float32]


class CategoryModel(Protocol):
    """Predicts the category of flows no name identified (the last identification layer)."""

    classes: tuple[str, ...]

    def predict(self, table: pa.Table, hide_rich: bool = False) -> Prediction: ...
