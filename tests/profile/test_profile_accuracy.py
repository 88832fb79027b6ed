"""Full pipeline on the labelled nDPI captures vs nDPI's expected results (>= 95 %)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowcast.profile.identify import Profiler
from shadowcast.profile.training import expected_flows, pipeline_accuracy


def test_parse_expected_results(data_dir: Path) -> None:
    rows = expected_flows(data_dir / "pcaps/ndpi/result/netflix.pcap.out")
    assert len(rows) == 61
    assert rows[0] == ("TCP", "192.168.1.7", 53171, "23.246.3.140", 80, "HTTP")
    assert rows[1][-1] == "HTTP.NetFlix"


@pytest.mark.slow
def test_category_accuracy_vs_ndpi(data_dir: Path) -> None:
    pytest.importorskip("nfstream")
    p = Profiler()
    acc = pipeline_accuracy(
        data_dir / "pcaps/ndpi/pcap", data_dir / "pcaps/ndpi/result", p.identify, p.appmap
    )
    assert acc.expected > 700
    assert acc.matched / acc.expected >= 0.98
    assert acc.accuracy >= 0.95, acc.per_file
