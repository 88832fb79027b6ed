"""Configuration of the collector: listeners, workers, batching, sampling overrides, record
checks, store-write buffering and the bounds on per-exporter state."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ListenerConfig(BaseModel):
    """One UDP listener. ``port`` 0 picks a free port (tests)."""

    model_config = ConfigDict(extra="forbid")

    protocol: str = Field(description="netflow | ipfix | sflow (a label; every port decodes all)")
    port: int = Field(ge=0, le=65535)

    @field_validator("protocol")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ("netflow", "ipfix", "sflow"):
            raise ValueError(f"protocol must be netflow, ipfix or sflow, not {v!r}")
        return v


def default_listeners() -> list[ListenerConfig]:
    return [
        ListenerConfig(protocol="netflow", port=2055),
        ListenerConfig(protocol="ipfix", port=4739),
        ListenerConfig(protocol="sflow", port=6343),
    ]


class CollectConfig(BaseModel):
    """``collect:`` section of the settings.

    ``bind`` is the listening address (``0.0.0.0`` for every IPv4 interface, ``::`` for
    IPv6 and IPv4); ``workers`` receiving-and-decoding processes share each port through
    SO_REUSEPORT (the kernel keeps one exporter on one worker, so templates stay together);
    one writer owns the store. Batches go to the store when they hold ``flush_rows`` rows or
    are ``flush_interval_s`` old, whichever comes first.
    """

    model_config = ConfigDict(extra="forbid")

    bind: str = "0.0.0.0"
    listeners: list[ListenerConfig] = Field(default_factory=default_listeners, max_length=64)
    rcvbuf_bytes: int = Field(default=64 * 1024 * 1024, ge=65536, le=2**30)
    workers: int = Field(default=2, ge=1, le=64)
    # Two DuckDB row groups: appends this large skip the WAL (~20% less CPU per row).
    flush_rows: int = Field(default=245_760, ge=1, le=10_000_000)
    flush_interval_s: float = Field(default=1.0, gt=0.0, le=60.0)
    # Per exporter address: a sampling rate that overrides whatever the exporter says.
    sampling_overrides: dict[str, int] = Field(default_factory=dict)
    # Prometheus exposition on this port (0 = off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_bind: str = "127.0.0.1"
    # Live capture (``--interface``): a flow is sent once idle this long (nfstream).
    capture_idle_timeout_s: int = Field(default=10, ge=1, le=3600)
    # A worker decodes once it holds ``decode_packets`` datagrams (at most 4096: each is
    # read into a 64 KiB slot) or 8 MiB, or its oldest one has waited ``decode_wait_s``
    # (each decode call has a fixed cost of about a millisecond).
    decode_packets: int = Field(default=1024, ge=1, le=65_536)
    decode_wait_s: float = Field(default=0.05, gt=0.0, le=1.0)
    # A worker hands its decoded records to the supervisor (and the service's profile stage)
    # once they are this old (default: half of flush_interval_s); store writes still follow
    # flush_rows / flush_interval_s. Small values give low latency to the service (replays).
    handoff_s: float | None = Field(default=None, gt=0.0, le=60.0)

    # -- record checks (collect.validate): a record failing one is counted per exporter
    # (invalid_records) and dropped; the rest of its batch is kept. Times are checked
    # against the receive time: a flow may start at most max_record_age_s before it and
    # end at most max_clock_skew_s after it (null lifts that side: replays of old data).
    max_record_age_s: float | None = Field(default=365 * 86400.0, gt=0.0, le=100 * 365 * 86400.0)
    max_clock_skew_s: float | None = Field(default=86400.0, gt=0.0, le=100 * 365 * 86400.0)
    # More bytes per packet than this is not a packet (64 KiB IP + link headers).
    max_packet_bytes: int = Field(default=65_664, ge=64, le=1 << 20)

    # -- store writes (store.spool): batches wait in memory up to buffer_bytes while the
    # store fails, then in spill_dir (if set) up to spill_max_bytes; retried with backoff
    # up to retry_max_s apart. Only past both bounds are rows lost (counted: rows_lost).
    buffer_bytes: int = Field(default=256 << 20, ge=1 << 20, le=1 << 40)
    spill_dir: Path | None = None
    spill_max_bytes: int = Field(default=1 << 30, ge=0, le=1 << 44)
    retry_max_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    # The thread that encodes and writes batches runs this much nicer than the rest
    # (Linux): when the CPUs are short, the workers draining the sockets go first and
    # the writer catches up from its buffer, instead of the kernel dropping datagrams.
    writer_nice: int = Field(default=10, ge=0, le=19)

    # -- state bounds, per worker: exporters tracked (the least recently heard evicted
    # with all their state; their counters fold into exporter "other"), templates in
    # all and per exporter, bytes of data sets waiting for their template and how long
    # they wait. allow_exporters (CIDRs): only these sources are decoded, others are
    # counted as rejected_packets of "other" and dropped (empty: every source).
    max_exporters: int = Field(default=2048, ge=1, le=1_000_000)
    max_templates: int = Field(default=16384, ge=1, le=10_000_000)
    max_templates_per_exporter: int = Field(default=1024, ge=1, le=65_536)
    max_pending_bytes: int = Field(default=16 << 20, ge=0, le=1 << 36)
    pending_age_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    allow_exporters: list[str] = Field(default_factory=list)

    @field_validator("bind")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError as exc:
            raise ValueError(f"bind must be an IP address, not {v!r}") from exc
        return v

    @field_validator("allow_exporters")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_exporters: {cidr!r} is not a CIDR prefix") from exc
        return v

    @field_validator("sampling_overrides")
    @classmethod
    def _rates(cls, v: dict[str, int]) -> dict[str, int]:
        for addr, rate in v.items():
            ipaddress.ip_address(addr)
            if not 1 <= rate <= 2**32 - 1:
                raise ValueError(f"sampling override for {addr} must be in [1, 2^32), not {rate}")
        return v
