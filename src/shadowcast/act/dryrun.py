"""The default actuator: render the plan (JSON or YAML) with its explanation; change nothing."""

from __future__ import annotations

import logging
from pathlib import Path

from shadowcast.act.base import ApplyResult
from shadowcast.errors import ActuationError
from shadowcast.plan.base import Plan

log = logging.getLogger(__name__)


class DryRunActuator:
    """Writes ``plan.json``/``plan.yaml`` (+ ``.txt`` explanation) to ``out_dir`` if given."""

    name = "dry-run"

    def __init__(self, fmt: str = "json", out_dir: str | Path | None = None) -> None:
        if fmt not in ("json", "yaml"):
            raise ActuationError(f"dry-run format must be 'json' or 'yaml', got {fmt!r}")
        self.fmt = fmt
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.last: Plan | None = None

    def apply(self, plan: Plan, *, dry_run: bool = True) -> ApplyResult:
        body = plan.to_json() if self.fmt == "json" else plan.to_yaml()
        actions: list[str] = []
        if self.out_dir is not None:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                p = self.out_dir / f"plan-{plan.plan_id}.{self.fmt}"
                p.write_text(body)
                (self.out_dir / f"plan-{plan.plan_id}.txt").write_text(plan.explain() + "\n")
            except OSError as exc:
                raise ActuationError(f"dry-run: cannot write to {self.out_dir}: {exc}") from exc
            actions.append(f"wrote {p}")
        self.last = plan
        return ApplyResult(
            plan.plan_id, self.name, True, "dry-run", tuple(actions), plan.explain(), body
        )

    def rollback(self) -> ApplyResult:
        pid = self.last.plan_id if self.last else ""
        self.last = None
        return ApplyResult(pid, self.name, True, "ok", (), "nothing was applied")
