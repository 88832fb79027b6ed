"""``shadowcast lab``: bring the namespace backbone up and down, send cross traffic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from shadowcast.cli_support import console, emit_json, out
from shadowcast.errors import ProbeError, TopologyError
from shadowcast.lab import build, netns
from shadowcast.lab.traffic import Processes, iperf_server, iperf_udp, replay_demands
from shadowcast.records import Topology

app = typer.Typer(help="Network-namespace lab backbone (root).", no_args_is_help=True)
PREFIX_OPT = typer.Option("--prefix", help="name prefix of every lab resource (<= 7 chars)")
JSON_OPT = typer.Option("--json", help="print one JSON object")


def _emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(obj)
    else:
        for k, v in obj.items():
            out.print(f"{k}: {v}")


def _root() -> None:
    ok, why = netns.have_root()
    if not ok:
        raise ProbeError(why)


def read_topology(path: Path) -> Topology:
    """A topology file, through the datasets loaders (SNDlib, GraphML, node-link JSON)."""
    try:
        from shadowcast.datasets import load_topology
    except ImportError as exc:  # the loaders live in another stage
        raise TopologyError(f"{path}: topology loaders unavailable ({exc})") from exc
    topo = load_topology(path)
    assert isinstance(topo, Topology)
    return topo


@app.command("up")
def up_cmd(
    topology: Annotated[Path, typer.Option("--topology", help="topology file")],
    scale: Annotated[float, typer.Option(help="capacity divisor (10 Gbit/s -> 10 Mbit/s)")] = 1000,
    edges: Annotated[str, typer.Option(help="comma-separated routers with an edge host")] = "",
    max_routers: Annotated[int, typer.Option(help="refuse larger topologies")] = 64,
    prefix: Annotated[str, PREFIX_OPT] = build.DEFAULT_PREFIX,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Build (idempotently) one namespace per router and edge host, shaped veth links."""
    _root()
    topo = read_topology(topology)
    if len(topo.nodes) > max_routers:
        raise TopologyError(f"{topology}: {len(topo.nodes)} routers > --max-routers {max_routers}")
    chosen = [e for e in edges.split(",") if e] or None
    plan = build.plan_lab(topo, scale=scale, edges=chosen, prefix=prefix)
    t0 = time.time()
    with console.status(f"building lab {prefix}* ({len(plan.routers)} routers)"):
        built = build.up(plan)
    _emit({"prefix": prefix, "built": built, "routers": len(plan.routers),
           "edges": sorted(plan.edges), "links": len(plan.links),
           "seconds": round(time.time() - t0, 3)}, as_json)  # fmt: skip


@app.command("down")
def down_cmd(
    prefix: Annotated[str, PREFIX_OPT] = build.DEFAULT_PREFIX,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Remove every namespace named PREFIX* (works after a crash: no state needed)."""
    _root()
    _emit({"prefix": prefix, "removed_namespaces": build.down(prefix)}, as_json)


@app.command("traffic")
def traffic_cmd(
    src: Annotated[str, typer.Option(help="router whose edge host sends")] = "",
    dst: Annotated[str, typer.Option(help="router whose edge host receives")] = "",
    mbps: Annotated[float, typer.Option(help="UDP rate (lab scale)")] = 1.0,
    seconds: float = 10.0,
    port: int = 5201,
    demands: Annotated[
        Path | None, typer.Option(help="replay a demand series (Mbit/s, divided by the scale)")
    ] = None,
    step_seconds: Annotated[float, typer.Option(help="lab seconds per demand step")] = 2.0,
    max_steps: int = 30,
    max_pairs: int = 8,
    prefix: Annotated[str, PREFIX_OPT] = build.DEFAULT_PREFIX,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Cross traffic with iperf3 (separate processes in the edge namespaces): one flow
    (``--src/--dst/--mbps``) or a demand series (``--demands FILE``)."""
    _root()
    plan = build.load_plan(prefix)
    if demands is not None:
        from shadowcast.datasets import load_demands

        series = load_demands(demands).slice(0, max_steps)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"replaying {demands.name}", total=series.steps)
            res = replay_demands(plan, series, step_seconds=step_seconds, max_pairs=max_pairs,
                                 on_step=lambda t: bar.update(task, completed=t + 1))  # fmt: skip
        _emit({"demands": str(demands), **res}, as_json)
        return
    for r in (src, dst):
        if r not in plan.edges:
            raise TopologyError(f"router {r!r} has no edge host in lab {prefix}*")
    with Processes() as procs, Progress(console=console, transient=True) as bar:
        procs.procs.append(iperf_server(plan, dst, port))
        client = iperf_udp(plan, src, dst, mbps, seconds, port)
        procs.procs.append(client)
        task = bar.add_task(f"{src} -> {dst} {mbps} Mbit/s", total=seconds)
        t0 = time.time()
        while client.poll() is None and time.time() - t0 < seconds + 5:
            bar.update(task, completed=min(seconds, time.time() - t0))
            time.sleep(0.2)
        rc = client.returncode
    _emit({"src": src, "dst": dst, "mbps": mbps, "seconds": seconds, "iperf3_rc": rc}, as_json)


@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    seconds: Annotated[
        float, typer.Option(min=40, max=1800, help="traffic schedule length (seconds)")
    ] = 150.0,
    step: Annotated[int, typer.Option(min=1, max=60, help="the service's rollup step (s)")] = 5,
    work_dir: Annotated[
        Path | None, typer.Option(help="store, settings and files (default: a new temp dir)")
    ] = None,
    keep_lab: Annotated[bool, typer.Option(help="leave the namespaces up afterwards")] = False,
    prefix: Annotated[str, PREFIX_OPT] = "scdemo-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run the living service against real routers in namespaces (root; about 3 minutes).

    A triangle backbone with one thin link, softflowd on every router exporting IPFIX to
    the service's collector in a management namespace, iperf3 traffic that ramps over the
    thin link. The service forecasts, opens and probes shadow tunnels, and switches paths
    with the Linux actuator before the link saturates; a refused plan and one that fails
    to apply are injected and must leave the routes as they were. Prints what was
    measured, predicted, decided and applied, with times.
    """
    import signal
    import tempfile

    from shadowcast.cli_support import settings_of
    from shadowcast.lab.demo import DemoOptions, LabDemo
    from shadowcast.lab.report import build_report, render
    from shadowcast.store.config import open_store

    work = work_dir or Path(tempfile.mkdtemp(prefix="shadowcast-lab-demo-"))
    demo = LabDemo(settings_of(ctx), DemoOptions(work, prefix, seconds, step, keep_lab=keep_lab))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: demo.stop_event.set())
    with console.status(f"lab demo {prefix}*: about {seconds + 40:.0f} s (work dir {work})"):
        run = demo.run()
    store = open_store(run.settings.store)
    try:
        report = build_report(run, store)
    finally:
        store.close()
    if as_json:
        emit_json(report)
    else:
        for line in render(report):
            out.print(line, markup=False, highlight=False)


@app.command("gen-training")
def gen_training_cmd(
    out: Annotated[Path, typer.Option("--out", help="Parquet file of labelled flows")],
    sessions: Annotated[int, typer.Option(help="sessions (labels and kinds in turn)")] = 60,
    slots: Annotated[int, typer.Option(help="sessions at a time")] = 3,
    budget_s: Annotated[float, typer.Option(help="start no session after this")] = 3600.0,
    seed: int = 1,
    kinds: Annotated[str, typer.Option(help="comma-separated kinds (default: all)")] = "",
    max_duration_s: Annotated[float, typer.Option(help="cap each session (0: none)")] = 0.0,
    keep_pcaps: Annotated[Path | None, typer.Option(help="folder to keep captures in")] = None,
    prefix: Annotated[str, PREFIX_OPT] = "scgen-",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Labelled training flows from real programs (video, bulk, ssh, games, SIP, web, DNS)
    in scgen-* namespaces, labelled by the generator (see shadowcast.lab.trafficgen)."""
    from shadowcast.lab import trafficgen

    _root()
    plan = trafficgen.plan_sessions(
        sessions, seed, [k for k in kinds.split(",") if k] or None, max_duration_s
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("sessions", total=len(plan))
        res = trafficgen.generate(out, plan, slots=slots, budget_s=budget_s,
                                  keep_pcaps=keep_pcaps, prefix=prefix,
                                  on_done=lambda s, r: bar.advance(task))  # fmt: skip
    _emit(res, as_json)
