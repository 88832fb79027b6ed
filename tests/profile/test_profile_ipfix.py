"""Conservation over a synthetic IPFIX stream decoded by the collector."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from shadowcast.profile.identify import Profiler
from shadowcast.profile.series import SeriesBuilder


def test_ipfix_stream_conservation_and_exporter_layer() -> None:
    synth = pytest.importorskip("shadowcast.collect.synth")
    decoders = pytest.importorskip("shadowcast.collect.decoders")
    packets = synth.build_stream("ipfix", 5000, seed=3)
    flows = decoders.FlowDecoder().decode([(p, "192.0.2.7") for p in packets], 1.7e9)
    assert flows.num_rows == 5000
    prof = Profiler()
    out = prof.identify(flows)
    assert out.num_rows == 5000
    # every record carried an NBAR2-style name: the exporter layer decided all of them
    assert set(out.column("app_source").to_pylist()) == {"exporter"}
    assert "unknown" not in set(out.column("category").to_pylist())
    sb = SeriesBuilder()
    s = sb.build(out)
    want = int(sb.estimated_bytes(out).sum())
    # the decoder already scaled bytes by the sampling rate: the series must not again
    assert want == int(np.asarray(flows.column("bytes").to_numpy(), np.int64).sum())
    for tier in (s, sb.rollup(s, 300), sb.rollup(s, 3600)):
        for kind in ("app", "edge"):
            part = tier.filter(pc.equal(tier.column("kind"), kind))
            assert int(pc.sum(part.column("bytes")).as_py()) == want
