"""Settings of the shadow stage: tunnel caps, STAMP, available-bandwidth probing."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TunnelConfig(BaseModel):
    """Caps on the tunnel manager; every cap fails closed (the event is refused)."""

    model_config = ConfigDict(extra="forbid")

    max_tunnels: int = Field(default=256, ge=1, le=65_536)
    create_rate_per_s: float = Field(default=20.0, gt=0, le=10_000)  # token bucket refill
    create_burst: int = Field(default=20, ge=1, le=10_000)
    probe_budget_share: float = Field(default=0.01, gt=0, le=0.2)  # of each link's capacity
    probe_rate_bps: float = Field(default=50_000.0, gt=0, le=1e11)  # wanted rate per tunnel
    min_probe_rate_bps: float = Field(default=2_000.0, gt=0, le=1e11)  # below: refused
    max_burst_bytes: int = Field(default=64_000, ge=1500, le=16 * 2**20)  # per-path, one train
    idle_s: float = Field(default=300.0, gt=0, le=31 * 86400)
    min_age_for_eviction_s: float = Field(default=5.0, ge=0, le=86400)
    vni_base: int = Field(default=100_000, ge=1, le=(1 << 24) - 1)
    sport_min: int = Field(default=49_152, ge=1024, le=65_534)
    overlay_cidr: str = "100.64.0.0/16"

    @field_validator("overlay_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            ipaddress.ip_network(v)
        except ValueError:
            raise ValueError(f"not an IP network: {v[:60]!r}") from None
        return v


class StampConfig(BaseModel):
    """The STAMP reflector (``shadow reflect``, the lab's reflectors) and senders.

    A key means authenticated mode (RFC 8762 §4.3); ``allow`` lists the source networks
    answered; ``rate_pps``/``burst`` is a token bucket per source address."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=862, ge=1, le=65_535)
    key_hex: str = Field(default="", max_length=128)  # HMAC key (hex); "" = unauthenticated
    allow: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"], min_length=1, max_length=1024
    )
    rate_pps: float = Field(default=2000.0, gt=0, le=1e6)
    burst: float = Field(default=200.0, gt=0, le=1e6)
    max_size: int = Field(default=1472, ge=112, le=65_507)
    replay_window: int = Field(default=1024, ge=8, le=1 << 20)
    max_age_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("key_hex")
    @classmethod
    def _hex_key(cls, v: str) -> str:
        v = v.strip()
        try:
            bytes.fromhex(v)
        except ValueError:
            raise ValueError("not a hex string (two hex digits per key byte)") from None
        return v

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        return v

    def key(self) -> bytes | None:
        return bytes.fromhex(self.key_hex) if self.key_hex else None


class AbwConfig(BaseModel):
    """Available-bandwidth trains: paced at the path capacity, bounded length
    (``shadowcast shadow probe --abw``): ``trains`` trains of ``train_packets`` packets of
    ``packet_bytes`` bytes, ``interval_s`` apart."""

    model_config = ConfigDict(extra="forbid")

    packet_bytes: int = Field(default=600, ge=100, le=1400)
    train_packets: int = Field(default=30, ge=4, le=200)
    trains: int = Field(default=3, ge=1, le=100)
    interval_s: float = Field(default=0.5, gt=0, le=3600)


class ShadowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tunnels: TunnelConfig = Field(default_factory=lambda: TunnelConfig())
    stamp: StampConfig = Field(default_factory=lambda: StampConfig())
    abw: AbwConfig = Field(default_factory=lambda: AbwConfig())
