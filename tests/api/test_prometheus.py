"""A real Prometheus (Debian's) scrapes the API's /metrics; PromQL returns a link's
predicted utilisation, the same the API reports."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

import pytest
from servers import free_port, get_json, server, wait_for

from shadowcast.api.server import ApiServer
from shadowcast.api.state import ApiState

pytestmark = pytest.mark.integration


def test_prometheus_scrapes_predicted_utilisation(state: ApiState, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    api = ApiServer(state, state.settings.api)
    url = api.start()
    try:
        target = url.removeprefix("http://")
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: shadowcast\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        argv = [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
        with server(argv, tmp_path / "prometheus.log"):
            q = 'shadowcast_link_predicted_utilisation_ratio{link="A->B",horizon="1h"}'
            query = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(q)}"

            def result() -> list[dict[str, object]]:
                out = get_json(query)
                assert out["status"] == "success"
                return list(out["data"]["result"])

            rows = wait_for(result, 60, "PromQL result")
            value = float(rows[0]["value"][1])  # type: ignore[index]
            from shadowcast.api import views

            want = next(r for r in views.links(state)["links"] if r["name"] == "A->B")
            assert value == pytest.approx(want["predicted"]["1h"]["util"], abs=1e-4)
            assert rows[0]["metric"]["job"] == "shadowcast"  # type: ignore[index]
            up = get_json(f"http://127.0.0.1:{port}/api/v1/query?query=shadowcast_service_up")
            assert float(up["data"]["result"][0]["value"][1]) == 1.0
    finally:
        api.stop()
