"""``shadowcast shadow``: list and show shadow tunnels, probe paths, run a reflector."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from dataclasses import asdict
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from shadowcast.cli_support import console, emit_record, out, settings_of
from shadowcast.errors import ConfigError, ProbeError, ShadowcastError
from shadowcast.settings import format_validation_error
from shadowcast.shadow.abw import combine, estimate_train, train_gap_s
from shadowcast.shadow.config import AbwConfig, ShadowConfig, StampConfig
from shadowcast.shadow.pathcheck import trace
from shadowcast.shadow.reflector import Reflector
from shadowcast.shadow.sockets import NETNS_DIR
from shadowcast.shadow.stamp import Sender
from shadowcast.shadow.wire import STAMP_PORT

app = typer.Typer(help="Shadow tunnels and STAMP probes.", no_args_is_help=True)
PREFIX_OPT = typer.Option("--prefix", help="namespace prefix of the lab to look in")
JSON_OPT = typer.Option("--json", help="print one JSON object")


def _namespaces(prefix: str) -> list[str]:
    import os

    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def tunnels(prefix: str) -> list[dict[str, Any]]:
    """Every shadow VXLAN device (``shv*``) in the lab's namespaces, one row per end."""
    rows = []
    for ns in _namespaces(prefix):
        proc = subprocess.run(["ip", "-n", ns, "-d", "-j", "addr", "show", "type", "vxlan"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0 or not proc.stdout.strip():
            continue
        for d in json.loads(proc.stdout):
            if not str(d.get("ifname", "")).startswith("shv"):
                continue
            info = d.get("linkinfo", {}).get("info_data", {})
            inner = next((a["local"] for a in d.get("addr_info", []) if a["family"] == "inet"), "")
            pr = info.get("port_range", {})
            rows.append({
                "name": d["ifname"], "netns": ns, "vni": info.get("id"),
                "local": info.get("local"), "remote": info.get("remote"),
                "sport": pr.get("low"), "sport_max": pr.get("high"),
                "dport": info.get("port"), "inner": inner, "state": d.get("operstate"),
                "ingress": inner.split(".")[-1].isdigit() and int(inner.split(".")[-1]) % 4 == 1,
            })  # fmt: skip
    return rows


def _ends(name: str, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ends = [r for r in tunnels(prefix) if r["name"] == name]
    src = next((r for r in ends if r["ingress"]), None)
    dst = next((r for r in ends if not r["ingress"]), None)
    if src is None or dst is None:
        raise ProbeError(f"tunnel {name!r} not found (both ends) in namespaces {prefix}*")
    return src, dst


def hostport(target: str, default_port: int = STAMP_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` (``default_port`` when none is given)."""
    try:
        if target.startswith("["):
            host, _, rest = target[1:].partition("]")
            return host, int(rest.lstrip(":") or default_port)
        if target.count(":") == 1:
            host, port = target.split(":")
            return host, int(port)
    except ValueError:
        raise ConfigError(f"{target!r}: expected HOST, HOST:PORT or [V6]:PORT") from None
    return target, default_port


def _key(key_hex: str | None, stamp: StampConfig) -> bytes | None:
    """``--key-hex``, else ``shadow.stamp.key_hex``; None: unauthenticated mode."""
    text = stamp.key_hex if key_hex is None else key_hex
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:
        raise ConfigError(f"--key-hex: not hexadecimal: {text[:20]!r}") from None


@app.command("list")
def list_cmd(
    prefix: Annotated[str, PREFIX_OPT] = "sclab-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """List shadow tunnels (ingress ends) in the lab's namespaces."""
    rows = [r for r in tunnels(prefix) if r["ingress"]]
    if as_json:
        emit_record({"tunnels": rows, "count": len(rows)}, True, "")
        return
    table = Table("name", "netns", "vni", "local", "remote", "sport", "inner", "state")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("name", "netns", "vni", "local", "remote", "sport",
                                             "inner", "state")))  # fmt: skip
    out.print(table)


def _trace_routers(src: dict[str, Any], prefix: str) -> list[str]:
    """The routers the tunnel's outer 5-tuple crosses (names when the lab plan knows them)."""
    with console.status("tracing the outer 5-tuple"):
        hops = [h for h in trace(src["local"], int(src["sport"]), src["remote"],
                                 netns=src["netns"]) if h]  # fmt: skip
    try:
        from shadowcast.lab.build import load_plan

        plan = load_plan(prefix)
    except ShadowcastError:  # not a lab tunnel: addresses only
        return hops
    return [plan.owner_of(h) or h for h in hops]


def _lab_capacity_mbps(path: list[str], prefix: str) -> float:
    """The smallest shaped rate along ``path`` in the lab (Mbit/s)."""
    from shadowcast.lab.build import load_plan

    plan = load_plan(prefix)
    rates = []
    for a, b in zip(path[:-1], path[1:], strict=False):
        lk, _dev = plan.link_between(a, b)
        rates.append(lk.rate_ab_bps if lk.a == a else lk.rate_ba_bps)
    if not rates:
        raise ProbeError(f"no lab links on path {path}")
    return min(rates) / 1e6


@app.command("show")
def show_cmd(
    name: str,
    prefix: Annotated[str, PREFIX_OPT] = "sclab-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """One tunnel: both ends, and the routers its outer 5-tuple crosses (Paris-style)."""
    src, dst = _ends(name, prefix)
    routers = _trace_routers(src, prefix)
    obj = {**{k: src[k] for k in ("name", "vni", "local", "remote", "sport", "dport")},
           "ingress_netns": src["netns"], "egress_netns": dst["netns"],
           "inner_local": src["inner"], "inner_remote": dst["inner"], "path": routers}  # fmt: skip
    emit_record(obj, as_json, f"tunnel {name}")


def _stamp_settings(ctx: typer.Context, **overrides: Any) -> StampConfig:
    """``shadow.stamp`` from the settings, with the command line's flags (not None) on top."""
    shadow = getattr(ctx.find_root().obj, "shadow", None)
    base = shadow.stamp if isinstance(shadow, ShadowConfig) else StampConfig()
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return StampConfig.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "command line", "shadow.stamp")) from exc


async def _probe(
    host: str, port: int, *, netns: str | None, local: str | None, count: int,
    interval: float, size: int, stamp: StampConfig, capacity_bps: float, trains: int,
    reflect_ns: str | None, abw: AbwConfig,
) -> dict[str, Any]:  # fmt: skip
    refl = None
    key = stamp.key()
    if reflect_ns is not None:
        refl = Reflector.from_config(stamp, netns=reflect_ns)
        await refl.start(host, port)
    try:
        sender = Sender(host, port, key=key, netns=netns, local=local, size=size, timeout_s=0.5)
        run = await sender.run(count, interval)
        res: dict[str, Any] = asdict(run.metrics())
        if capacity_bps > 0:
            ests = []
            gap = train_gap_s(abw.packet_bytes, capacity_bps)
            for i in range(trains):
                if i:
                    await asyncio.sleep(abw.interval_s)
                tr = await sender.train(abw.train_packets, gap, size=abw.packet_bytes)
                ests.append(estimate_train(tr, capacity_bps))
            res["abw_mbps"] = combine(ests) / 1e6
            res["probe_bytes"] = sum(e.probe_bytes for e in ests)
    finally:
        if refl is not None:
            refl.stop()
    return res


@app.command("probe")
def probe_cmd(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="HOST[:PORT] of a reflector, or a tunnel name")],
    count: int = 20,
    interval: float = 0.05,
    size: int = 0,
    key_hex: Annotated[
        str | None, typer.Option(help="HMAC key (hex): authenticated mode [shadow.stamp.key_hex]")
    ] = None,
    netns: Annotated[str, typer.Option(help="send from this namespace")] = "",
    capacity_mbps: Annotated[float, typer.Option(help="path capacity: also estimate abw")] = 0.0,
    abw: Annotated[
        bool, typer.Option(help="estimate abw (lab tunnel: capacity from the plan)")
    ] = False,
    trains: Annotated[
        int | None, typer.Option(help="abw trains (default shadow.abw.trains)", min=1, max=100)
    ] = None,
    prefix: Annotated[str, PREFIX_OPT] = "sclab-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """STAMP RTT, one-way delay, jitter, loss (and abw) to a reflector or through a tunnel.

    Through a tunnel (``shv...``) a reflector is started for the run at the far end, with
    the shadow.stamp settings. Trains follow ``shadow.abw`` (packets, size, pause)."""
    cfg = settings_of(ctx).shadow
    stamp = _stamp_settings(ctx, key_hex=key_hex)
    if target.startswith("shv"):
        src, dst = _ends(target, prefix)
        host, port, ns, local = dst["inner"], cfg.stamp.port, src["netns"], src["inner"]
        rns: str | None = dst["netns"]
        path: list[str] = _trace_routers(src, prefix)
        if abw and capacity_mbps <= 0:
            capacity_mbps = _lab_capacity_mbps(path, prefix)
    else:
        host, port = hostport(target, cfg.stamp.port)
        ns, local, rns, path = netns or None, None, None, []
    t0 = time.time()
    with console.status(f"probing {target}"):
        res = asyncio.run(_probe(host, port, netns=ns, local=local, count=count,
                                 interval=interval, size=size, stamp=stamp,
                                 capacity_bps=capacity_mbps * 1e6,
                                 trains=cfg.abw.trains if trains is None else trains,
                                 reflect_ns=rns, abw=cfg.abw))  # fmt: skip
    res["target"] = target
    res["path"] = path
    res["elapsed_s"] = time.time() - t0
    emit_record(res, as_json, f"probe {target}")


@app.command("reflect")
def reflect_cmd(
    ctx: typer.Context,
    host: str = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="UDP port [shadow.stamp.port]")] = None,
    key_hex: Annotated[
        str | None, typer.Option(help="HMAC key (hex): authenticated mode [shadow.stamp.key_hex]")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="answer only these networks (repeat) [.allow]")
    ] = None,
    rate_pps: Annotated[float | None, typer.Option(help="per-source packets/s [.rate_pps]")] = None,
    burst: Annotated[float | None, typer.Option(help="per-source burst [.burst]")] = None,
    max_size: Annotated[int | None, typer.Option(help="largest datagram [.max_size]")] = None,
    seconds: Annotated[float, typer.Option(help="stop after this long (0: until signalled)")] = 0,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run a STAMP session-reflector with the shadow.stamp settings (flags override them);
    prints its counters when it stops (--seconds, SIGTERM or SIGINT)."""
    cfg = _stamp_settings(ctx, port=port, key_hex=key_hex, allow=allow, rate_pps=rate_pps,
                          burst=burst, max_size=max_size)  # fmt: skip

    async def main() -> dict[str, int]:
        refl = Reflector.from_config(cfg)
        bound = await refl.start(host, cfg.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        mode = "authenticated" if cfg.key_hex else "unauthenticated"
        console.print(f"reflecting on {bound[0]}:{bound[1]} ({mode})")
        try:
            if seconds > 0:
                await asyncio.wait_for(stop.wait(), seconds)
            else:
                await stop.wait()
        except TimeoutError:
            pass
        finally:
            refl.stop()
        return dict(refl.counters)

    counters = asyncio.run(main())
    emit_record({"host": host, "port": cfg.port, **counters}, as_json, "reflector")


@app.command("open")
def open_cmd(
    ctx: typer.Context,
    src: Annotated[str, typer.Option(help="ingress router (has an edge host)")],
    dst: Annotated[str, typer.Option(help="egress router (has an edge host)")],
    application: str = "cli",
    traffic_class: Annotated[str, typer.Option("--class")] = "default",
    sport: Annotated[int, typer.Option(help="the application's outer source port (0: derive)")] = 0,
    prefix: Annotated[str, PREFIX_OPT] = "sclab-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Create the shadow tunnel of a new-path event in the lab (along the lab's path), under
    the ``shadow.tunnels`` caps."""
    from shadowcast.lab.build import load_plan
    from shadowcast.shadow.base import NewPathEvent
    from shadowcast.shadow.linux import LinuxVxlanBackend
    from shadowcast.shadow.tunnels import TunnelManager

    plan = load_plan(prefix)
    caps = {}
    for lk in plan.links:
        caps[(lk.a, lk.b)], caps[(lk.b, lk.a)] = lk.rate_ab_bps, lk.rate_ba_bps
    live = tunnels(prefix)
    conf = settings_of(ctx).shadow.tunnels
    base = max([int(r["vni"]) for r in live] + [conf.vni_base - 1]) + 1
    # each run is a new manager: move past the live tunnels' VNIs and overlay addresses
    update: dict[str, Any] = {"vni_base": base}
    if live:
        update["overlay_cidr"] = f"100.{64 + len(live) // 2 % 64}.0.0/16"
    cfg = conf.model_copy(update=update)
    backend = LinuxVxlanBackend({r: e.ns for r, e in plan.edges.items()})
    mgr = TunnelManager(backend, {r: e.addr_host for r, e in plan.edges.items()}, caps, cfg)
    path = tuple(plan.path(src, dst))
    t = mgr.on_new_path(NewPathEvent(application, src, dst, path, traffic_class, sport or None))
    if t is None:
        raise ProbeError(f"tunnel refused: {dict(mgr.counters)}")
    emit_record({"name": t.spec.name, "vni": t.spec.vni, "sport": t.spec.sport, "path": list(path),
           "inner_local": t.spec.inner_local, "inner_remote": t.spec.inner_remote,
           "probe_rate_bps": t.probe_rate_bps}, as_json, "tunnel")  # fmt: skip


@app.command("close")
def close_cmd(name: str, prefix: Annotated[str, PREFIX_OPT] = "sclab-") -> None:
    """Delete both ends of a shadow tunnel."""
    src, dst = _ends(name, prefix)
    for end in (src, dst):
        subprocess.run(["ip", "-n", end["netns"], "link", "del", name], check=False)
