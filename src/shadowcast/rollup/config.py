"""Settings of the rollup stage (YAML key ``rollup``): how flows become OD series."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shadowcast.units import Duration, parse_duration


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

    step: Duration = Field("5m", description="bucket of the OD series (the service's step)")
    lateness_s: int = Field(
        60, ge=0, le=86_400, description="a bucket closes this long after its end (late records)"
    )
    edge_to_node: dict[str, str] = Field(
        default_factory=dict,
        max_length=100_000,
        description="edge name (site or interface label) -> router",
    )
    class_of: dict[str, str] = Field(
        default_factory=dict,
        max_length=1000,
        description="category -> routing class (default: its latency sensitivity)",
    )
    max_open_buckets: int = Field(
        48, ge=2, le=10_000, description="buckets kept open at once (bounded memory)"
    )

    @property
    def step_s(self) -> int:
        return parse_duration(self.step)
