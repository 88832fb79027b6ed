"""Settings of the rollup stage (YAML key ``rollup``): how flows become OD series."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.units import parse_duration


class RollupConfig(BaseModel):
    """Flows become per-step demand between the routers of the topology.

    A flow's ingress and egress come from the profiler's placement (``profile.sites_file``:
    the exporter and its interfaces give the ingress edge, the destination prefix's site
    the egress). An edge is a router of the topology when its name is a node's name, or
    through ``edge_to_node``. Flows whose ingress or egress is not a router are counted
    by reason and never guessed. ``class_of`` groups application categories into the
    routing classes planned and forecast together (default: by latency sensitivity).
    """

    model_config = ConfigDict(extra="forbid")

    step: str = Field("5m", description="bucket of the OD series (the service's step)")
    lateness: str = Field(
        "1m", description="a bucket closes this long after its end (late flow records)"
    )
    edge_to_node: dict[str, str] = Field(
        default_factory=dict, description="edge name (site or interface label) -> router"
    )
    class_of: dict[str, str] = Field(
        default_factory=dict,
        description="category -> routing class (default: its latency sensitivity)",
    )
    max_open_buckets: int = Field(
        48, ge=2, le=10_000, description="buckets kept open at once (bounded memory)"
    )

    @field_validator("step", "lateness")
    @classmethod
    def _duration(cls, v: str) -> str:
        try:
            parse_duration(v) if v not in ("0", "0s") else 0
        except Exception as exc:  # ConfigError: pydantic reports it with the field
            raise ValueError(str(exc)) from exc
        return v

    @property
    def step_s(self) -> int:
        return parse_duration(self.step)

    @property
    def lateness_s(self) -> int:
        return 0 if self.lateness in ("0", "0s") else parse_duration(self.lateness)
