"""What the dashboard draws, computed server-side: the topology map's geometry and colours,
and chart specs for ``static/app.js`` (one x axis, aligned series, bands between two series).

A chart spec is plain JSON: ``{"x": [unix seconds], "series": [{"label", "values", "color",
"dash", "fill"}], "bands": [[upper index, lower index, fill]], "unit": "pct"|"mbps",
"threshold": 0.9}``; series indices count from 1 (uPlot's, 0 being x). A series with
``"points": true`` shows its points; ``"time": false`` (with ``"xlabel"``) makes x a plain
number (the tuning curve's p).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

# utilisation -> colour: green under 60 %, amber to the threshold, red above, dark red >= 100 %
SCALE = ((0.6, "#2e9d4f"), (0.8, "#c9a227"), (0.9, "#e07b24"), (1.0, "#d03030"))
OVER = "#7a1010"
UNKNOWN = "#9aa0a6"


def colour(util: float | None, threshold: float = 0.9) -> str:
    if util is None or not math.isfinite(util):
        return UNKNOWN
    for limit, c in SCALE:
        if util < limit:
            return c
    return OVER


def _ts(text: str | None) -> int | None:
    return None if text is None else int(datetime.fromisoformat(text).timestamp())


def topology_map(
    topo: dict[str, Any], links: dict[str, Any], width: int = 900, height: int = 520
) -> dict[str, Any]:
    """SVG coordinates of nodes and links (each direction offset to its own side), with the
    utilisation per slider position (``now`` then each horizon) and its colour."""
    nodes = topo["nodes"]
    have = [n for n in nodes if n["lon"] is not None and n["lat"] is not None]
    pos: dict[str, tuple[float, float]] = {}
    pad = 40
    if len(have) == len(nodes) and nodes:
        lon = [n["lon"] for n in nodes]
        lat = [n["lat"] for n in nodes]
        x0, x1, y0, y1 = min(lon), max(lon), min(lat), max(lat)
        sx = (width - 2 * pad) / max(x1 - x0, 1e-9)
        sy = (height - 2 * pad) / max(y1 - y0, 1e-9)
        s = min(sx, sy)
        for n in nodes:
            pos[n["name"]] = (pad + (n["lon"] - x0) * s, height - pad - (n["lat"] - y0) * s)
    else:  # no coordinates: a circle
        r = min(width, height) / 2 - pad
        for i, n in enumerate(nodes):
            a = 2 * math.pi * i / max(len(nodes), 1) - math.pi / 2
            pos[n["name"]] = (width / 2 + r * math.cos(a), height / 2 + r * math.sin(a))
    steps = ["now", *links.get("horizons", [])]
    thr = float(links.get("threshold", 0.9))
    out_links = []
    for lk in links.get("links", []):
        (xa, ya), (xb, yb) = pos[lk["src"]], pos[lk["dst"]]
        dx, dy = xb - xa, yb - ya
        d = math.hypot(dx, dy) or 1.0
        ox, oy = -dy / d * 3.0, dx / d * 3.0  # 3 px to the right of the direction of travel
        utils = [lk["util_now"]] + [(lk["predicted"].get(h) or {}).get("util") for h in steps[1:]]
        out_links.append({
            "name": lk["name"], "x1": round(xa + ox, 1), "y1": round(ya + oy, 1),
            "x2": round(xb + ox, 1), "y2": round(yb + oy, 1),
            "util": utils, "colours": [colour(u, thr) for u in utils],
            "width": round(1.5 + 2.5 * math.log10(max(lk["capacity_mbps"], 1.0)) / 5, 1),
            "firing": lk["firing"],
        })  # fmt: skip
    return {
        "width": width,
        "height": height,
        "steps": steps,
        "nodes": [{"name": n, "x": round(x, 1), "y": round(y, 1)} for n, (x, y) in pos.items()],
        "links": out_links,
    }


def _align(parts: list[tuple[list[int | None], list[Any]]]) -> tuple[list[int], list[list[Any]]]:
    xs = sorted({t for times, _ in parts for t in times if t is not None})
    index = {t: i for i, t in enumerate(xs)}
    cols = []
    for times, values in parts:
        col: list[Any] = [None] * len(xs)
        for t, v in zip(times, values, strict=False):
            if t is not None:
                col[index[t]] = v
        cols.append(col)
    return xs, cols


def _finite(times: list[int | None], values: list[Any]) -> tuple[list[int | None], list[Any]]:
    keep = [i for i, v in enumerate(values) if v is not None]
    return [times[i] for i in keep], [values[i] for i in keep]


def link_chart(data: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Measured utilisation; what was predicted ``horizon`` ahead with its upper bounds (a
    band up to the widest); the latest forecast with its bands."""
    act, past, fc = data["actual"], data["past"], data["forecast"]
    t_act = [_ts(t) for t in act["time"]]
    t_past = [_ts(t) for t in past.get("time", [])]
    t_fc = [_ts(t) for t in fc.get("time", [])]
    h = data["horizon"]
    spec: list[tuple[dict[str, Any], list[int | None], list[Any]]] = [
        ({"label": "measured", "color": "#1f3b73", "width": 2}, t_act, act["util"]),
        ({"label": f"predicted {h} ahead", "color": "#7b61c9", "dash": [4, 3]}, t_past,
         past.get("util", [])),
    ]  # fmt: skip
    levels = sorted((k for k in past if k.startswith("upper_")), key=lambda k: float(k[6:]))
    for k in levels:
        spec.append(({"label": f"its upper {k[6:]} %", "color": "#b9a8ea"}, t_past, past[k]))
    spec.append(
        ({"label": "forecast now", "color": "#d0621b", "width": 2}, t_fc, fc.get("util", []))
    )
    fc_levels = sorted((k for k in fc if k.startswith("upper_")), key=lambda k: float(k[6:]))
    for k in fc_levels:  # bounds are computed at the forecast horizons only: joined
        meta = {"label": f"forecast upper {k[6:]} %", "color": "#f0a070", "span": True}
        spec.append((meta, *_finite(t_fc, fc[k])))
    xs, cols = _align([(t, v) for _, t, v in spec])
    series = [dict(meta, values=col) for (meta, _, _), col in zip(spec, cols, strict=True)]
    bands = []
    if levels:  # widest past upper down to the past mean
        bands.append([3 + len(levels) - 1, 2, "rgba(123,97,201,0.15)"])
    fc_mean = 3 + len(levels)
    for j, _ in enumerate(fc_levels):
        bands.append([fc_mean + 1 + j, fc_mean, "rgba(208,98,27,0.18)"])
    return {"x": xs, "series": series, "bands": bands, "unit": "pct", "threshold": threshold}


def class_chart(data: dict[str, Any]) -> dict[str, Any]:
    """An application class: measured demand, the latest forecast and its intervals."""
    act, fc = data["actual"], data["forecast"]
    t_act = [_ts(t) for t in act["time"]]
    t_fc = [_ts(t) for t in fc.get("time", [])]
    spec: list[tuple[dict[str, Any], list[int | None], list[Any]]] = [
        ({"label": "measured", "color": "#1f3b73", "width": 2}, t_act, act["mbps"]),
        ({"label": "forecast", "color": "#d0621b", "width": 2}, t_fc, fc.get("mbps", [])),
    ]
    levels = sorted((k[6:] for k in fc if k.startswith("upper_")), key=float, reverse=True)
    for lv in levels:
        spec.append(({"label": f"upper {lv} %", "color": "#f0a070"}, t_fc, fc[f"upper_{lv}"]))
        spec.append(({"label": f"lower {lv} %", "color": "#f0a070"}, t_fc, fc[f"lower_{lv}"]))
    xs, cols = _align([(t, v) for _, t, v in spec])
    series = [dict(meta, values=col) for (meta, _, _), col in zip(spec, cols, strict=True)]
    bands = [[3 + 2 * j, 4 + 2 * j, "rgba(208,98,27,0.15)"] for j in range(len(levels))]
    return {"x": xs, "series": series, "bands": bands, "unit": "mbps"}


def accuracy_chart(trend: list[dict[str, Any]]) -> dict[str, Any]:
    """NMAE per hour, per kind and horizon, beside persistence's."""
    palette = ["#1f3b73", "#d0621b", "#2e9d4f", "#7b61c9", "#c9a227", "#d03030"]
    spec: list[tuple[dict[str, Any], list[int | None], list[Any]]] = []
    for i, tr in enumerate(trend):
        t = [_ts(x) for x in tr["time"]]
        c = palette[i % len(palette)]
        spec.append(
            ({"label": f"{tr['kind']} {tr['horizon']}", "color": c, "width": 2}, t, tr["nmae"])
        )
        spec.append(({"label": f"{tr['kind']} {tr['horizon']} persistence", "color": c,
                      "dash": [3, 3]}, t, tr["nmae_persistence"]))  # fmt: skip
    xs, cols = _align([(t, v) for _, t, v in spec])
    series = [dict(meta, values=col) for (meta, _, _), col in zip(spec, cols, strict=True)]
    return {"x": xs, "series": series, "bands": [], "unit": "ratio"}


def actions_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per applied action (x: when it was applied) and horizon: the MLU its plan predicted
    after it (dashed) and the MLU realised (points joined across gaps)."""
    palette = ["#1f3b73", "#d0621b", "#2e9d4f", "#7b61c9"]
    horizons = sorted({int(r["horizon_s"]) for r in rows})
    spec: list[tuple[dict[str, Any], list[int | None], list[Any]]] = []
    for i, h in enumerate(horizons):
        sel = sorted((r for r in rows if int(r["horizon_s"]) == h), key=lambda r: r["issued"])
        t = [_ts(r["issued"]) for r in sel]
        c = palette[i % len(palette)]
        label = sel[0]["horizon"]
        spec.append(({"label": f"predicted {label}", "color": c, "dash": [4, 3], "span": True,
                      "points": True}, t, [r["mlu_predicted"] for r in sel]))  # fmt: skip
        spec.append(({"label": f"realised {label}", "color": c, "width": 2, "span": True,
                      "points": True}, t, [r["mlu_realised"] for r in sel]))  # fmt: skip
    xs, cols = _align([(t, v) for _, t, v in spec])
    series = [dict(meta, values=col) for (meta, _, _), col in zip(spec, cols, strict=True)]
    return {"x": xs, "series": series, "bands": [], "unit": "pct"}


def tuning_chart(cls: dict[str, Any]) -> dict[str, Any]:
    """A link class's tuning curve over p (x): precision and recall of the rule replayed at
    each p, and the p in force marked on the precision curve."""
    curve = cls.get("curve") or {"p": [], "precision": [], "recall": []}
    xs = list(curve["p"])
    now = cls.get("p")
    mark = [v if now is not None and abs(x - now) < 1e-9 else None
            for x, v in zip(xs, curve["precision"], strict=True)]  # fmt: skip
    series = [
        {"label": "precision", "color": "#1f3b73", "width": 2, "values": curve["precision"]},
        {
            "label": "recall",
            "color": "#d0621b",
            "width": 2,
            "dash": [6, 4],
            "values": curve["recall"],
        },
        {"label": "p in force", "color": "#d03030", "points": True, "values": mark},
    ]
    return {"x": xs, "series": series, "bands": [], "unit": "ratio", "time": False, "xlabel": "p"}
