"""``eval forecast``'s frames and its ablation table (the forecast stage's part of the
command, kept here so the command stays a thin layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from shadowcast.forecast.enrich import demand_inputs, site_regions
from shadowcast.records import SeriesFrame


def eval_frames(
    demands: Path,
    test: Path | None,
    topology: Path | None,
    capacities: Path | None,
    settings: Any,
) -> tuple[SeriesFrame, SeriesFrame | None]:
    """The training (or whole) frame and the optional test frame, each with its inputs:
    geography from the topology's coordinates (else the demand file's), path capacity and
    headroom from the demands routed over the topology (``forecast.exog``)."""
    from shadowcast import datasets

    topo = datasets.load_topology(topology, capacities_from=capacities) if topology else None
    if capacities is not None and topo is None:
        from shadowcast.errors import ConfigError

        raise ConfigError("--capacities-from needs --topology")
    regions = site_regions(settings.profile.sites_file)

    def frame(path: Path) -> SeriesFrame:
        raw = SeriesFrame.from_demands(datasets.load_demands(path, topology=topo, trim_empty=True))
        coords = datasets.demand_coords(path)
        return demand_inputs(
            raw, topology=topo, coords=coords, regions=regions, exog=settings.forecast.exog
        )

    return frame(demands), frame(test) if test is not None else None


def ablation_table(console: Any, rows: list[dict[str, Any]]) -> None:
    """The ablation rows as a table: NMAE per variant and horizon, and the change."""
    if not rows:
        console.print("no ablation rows")
        return
    model = rows[0]["model"]
    tab = Table(title=f"What each input contributes ({model}: backtest without each group)")
    spread = "nmae_sd" in rows[0]
    heads = ["inputs", "h", "NMAE", *(["± sd"] if spread else []), "×pers", "Δ NMAE", "Δ %"]
    for head in (*heads, "cov80", "cov95"):
        tab.add_column(head, justify="left" if head in ("inputs", "h") else "right")
    for r in rows:
        tab.add_row(
            r["inputs"],
            r["horizon"],
            f"{r['nmae']:.4f}",
            *([f"{r['nmae_sd']:.4f}"] if spread else []),
            f"{r['mase_persistence']:.3f}",
            ""
            if r["group"] is None and r["inputs"] != "history only"
            else f"{r['delta_nmae']:+.4f}",
            ""
            if r["group"] is None and r["inputs"] != "history only"
            else f"{r['delta_pct']:+.1f}",
            f"{r.get('coverage_80', float('nan')):.3f}",
            f"{r.get('coverage_95', float('nan')):.3f}",
        )
    console.print(tab)
    console.print(
        "Δ: NMAE without the group minus NMAE with every input (> 0: the group helps); "
        "history only: every group left out"
        + (f"; mean over {rows[0]['seeds']} seeds, ± their standard deviation" if spread else "")
    )
