"""A real Alertmanager (Debian's prometheus-alertmanager) gets the service's alerts: labels
(link, application class, severity, team), the lead time as an annotation, grouped; and
resolved (endsAt) when the rule clears. The notifications Alertmanager sends on are caught
by a webhook receiver on loopback."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from servers import free_port, get_json, server, wait_for  # noqa: E402

from shadowcast.alert.notifiers import AlertmanagerNotifier  # noqa: E402
from shadowcast.alert.rules import CapacityRule  # noqa: E402
from shadowcast.alert.stage import deliver  # noqa: E402

pytestmark = pytest.mark.integration


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got = []
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/am"
    finally:
        srv.shutdown()
        srv.server_close()


def test_alertmanager_fires_groups_and_resolves(receiver: str, tmp_path: Path) -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip(
            "prometheus-alertmanager not installed (apt-get install prometheus-alertmanager)"
        )
    port = free_port()
    (tmp_path / "am.yml").write_text(
        "route:\n  receiver: sink\n  group_by: [alertname, team]\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: sink\n"
        f"    webhook_configs: [{{url: '{receiver}', send_resolved: true}}]\n"
    )
    argv = [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # fmt: skip
    am = f"http://127.0.0.1:{port}"
    links = ["fra->par", "fra->ams", "lon->ams"]
    teams = {"fra->*": "core-eu", "*": "edge"}
    with server(argv, tmp_path / "alertmanager.log"):
        wait_for(lambda: get_json(am + "/api/v2/status"), 30, "alertmanager up")
        rule = CapacityRule(links, threshold=0.9, within_steps=4, step_s=300)
        notifier = AlertmanagerNotifier(am, resend_s=60)
        now = np.datetime64("now", "s")
        util = np.array([[0.5, 0.8, 0.95, 0.97], [0.6, 0.92, 0.99, 1.05], [0.2] * 4])
        new, _ = deliver(rule, [notifier], now, util, teams=teams, class_of_link=lambda i: "high")
        assert [a.subject for a in new] == ["fra->par", "fra->ams"] and notifier.failures == 0

        def firing() -> list[dict[str, Any]]:
            return [g for g in _Receiver.got if g["status"] == "firing"]

        groups = wait_for(firing, 30, "firing notification")
        g = groups[0]
        assert g["groupLabels"] == {"alertname": "LinkCapacityPredicted", "team": "core-eu"}
        assert len(g["alerts"]) == 2  # grouped: both links of the team in one notification
        a = next(x for x in g["alerts"] if x["labels"]["link"] == "fra->ams")
        assert a["labels"]["class"] == "high" and a["labels"]["severity"] == "critical"
        assert a["annotations"]["lead_time"] == "10m" and a["annotations"]["lead_seconds"] == "600"
        listed = get_json(am + "/api/v2/alerts?active=true")
        assert {x["labels"]["link"] for x in listed} == {"fra->par", "fra->ams"}
        # the predictions fall below threshold x clear_ratio: the service sends resolutions
        later = now + np.timedelta64(1, "s")
        new, resolved = deliver(rule, [notifier], later, np.full((3, 4), 0.3), teams=teams)
        assert new == [] and {a.subject for a in resolved} == {"fra->par", "fra->ams"}

        def resolved_note() -> list[dict[str, Any]]:
            return [g for g in _Receiver.got if g["status"] == "resolved"]

        done = wait_for(resolved_note, 30, "resolved notification")
        assert {x["labels"]["link"] for x in done[-1]["alerts"]} == {"fra->par", "fra->ams"}
        assert all(x["status"] == "resolved" and x["endsAt"].startswith(str(later)[:16])
                   for x in done[-1]["alerts"])  # fmt: skip
        assert get_json(am + "/api/v2/alerts?active=true") == []
