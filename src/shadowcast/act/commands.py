"""``shadowcast act apply``: check a saved plan and apply it through the configured actuator.

The ``act`` settings decide everything: which actuator (``dry-run`` renders the plan,
``webhook`` POSTs it to a controller), whether it is a dry run, the most changes a plan
may carry, the dry-run format and folder, the webhook URL and timeout. Every outcome
(applied, dry run, rejected, rolled back) is written to the store's ``actions`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shadowcast.cli_support import emit_json, out, settings_of
from shadowcast.errors import ConfigError, PlanError

app = typer.Typer(help="Apply a saved plan through the configured actuator.", no_args_is_help=True)


@app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(help="plan JSON (`shadowcast plan --save`)")],
    topology: Annotated[Path, typer.Option("--topology", "-t", help="topology file")],
    capacities_from: Annotated[
        Path | None, typer.Option("--capacities-from", help="take capacities from this file")
    ] = None,
    dry_run: Annotated[
        bool | None,
        typer.Option("--dry-run/--no-dry-run", help="override act.dry_run (default: on)"),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit/--no-audit", help="record the outcome in the store")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Check the plan against the topology and ``act.max_changes``, then apply it."""
    from shadowcast.act.base import apply_plan, store_audit
    from shadowcast.act.config import make_actuator
    from shadowcast.datasets import load_topology
    from shadowcast.plan.base import Plan
    from shadowcast.store.config import open_store

    settings = settings_of(ctx)
    cfg = settings.act
    try:
        plan = Plan.load(plan_file)  # PlanError on one line for any damaged or hostile file
    except PlanError as exc:
        why = str(exc).removeprefix(f"{plan_file}: ")
        raise ConfigError(f"{plan_file}: not a plan file: {why}") from None
    topo = load_topology(topology, capacities_from=capacities_from)
    actuator = make_actuator(cfg)
    dry = cfg.dry_run if dry_run is None else dry_run
    store = open_store(settings.store) if audit else None
    try:
        res = apply_plan(
            actuator,
            plan,
            topo,
            dry_run=dry,
            max_changes=cfg.max_changes,
            audit=store_audit(store) if store is not None else None,
        )
    finally:
        if store is not None:
            store.close()
    doc: dict[str, Any] = {
        "plan_id": res.plan_id,
        "actuator": res.actuator,
        "dry_run": res.dry_run,
        "status": res.status,
        "actions": list(res.actions),
        "changes": len(plan.changes),
    }
    if as_json:
        emit_json(doc)
        return
    out.print(f"{res.actuator}: {res.status} plan {res.plan_id} ({len(plan.changes)} changes)")
    for action in res.actions:
        out.print(f"  {action}", highlight=False)
    if res.detail:
        out.print(res.detail, highlight=False)
