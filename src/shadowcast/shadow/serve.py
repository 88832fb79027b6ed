"""Run a STAMP reflector until SIGTERM/SIGINT, with the ``shadow.stamp`` settings applied.

``python -m shadowcast.shadow.serve HOST PORT [KEYHEX] [--config FILE | --settings-stdin]``

Used by the lab to put reflectors in edge namespaces as separate processes
(``ip netns exec NS python -m shadowcast.shadow.serve ...``). The settings come, like the
CLI's, from ``--config`` (default ``./shadowcast.yaml`` if present) and the environment,
or, with ``--settings-stdin``, as one JSON object of ``shadow.stamp`` fields on standard
input (keeps a key off the command line). KEYHEX, if given, overrides the key. Prints
``ready`` on stdout once bound, and the counters as one JSON line on stderr when stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from shadowcast.errors import ShadowcastError
from shadowcast.settings import format_validation_error, load_settings
from shadowcast.shadow.config import ShadowConfig, StampConfig
from shadowcast.shadow.reflector import Reflector


async def serve(host: str, port: int, cfg: StampConfig) -> dict[str, int]:
    refl = Reflector.from_config(cfg)
    await refl.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        refl.stop()
    return dict(refl.counters)


def stamp_settings(config: Path | None, from_stdin: bool, key_hex: str | None) -> StampConfig:
    """The effective ``shadow.stamp`` settings; raises ShadowcastError naming a bad field."""
    if from_stdin:
        try:
            cfg = StampConfig.model_validate(json.loads(sys.stdin.read() or "{}"))
        except json.JSONDecodeError as exc:
            raise ShadowcastError(f"stamp settings on stdin: not JSON: {exc}") from exc
        except ValidationError as exc:
            raise ShadowcastError(format_validation_error(exc, "stdin", "shadow.stamp")) from exc
    else:
        if config is None and Path("shadowcast.yaml").is_file():
            config = Path("shadowcast.yaml")
        shadow = getattr(load_settings(config), "shadow", None)
        cfg = shadow.stamp if isinstance(shadow, ShadowConfig) else StampConfig()
    if key_hex:
        try:
            cfg = StampConfig.model_validate({**cfg.model_dump(), "key_hex": key_hex})
        except ValidationError as exc:
            raise ShadowcastError(format_validation_error(exc, "KEYHEX", "shadow.stamp")) from exc
    return cfg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="shadowcast.shadow.serve", description=__doc__)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("key_hex", nargs="?", default=None, help="HMAC key (hex): overrides")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, default=None, help="YAML settings file")
    src.add_argument("--settings-stdin", action="store_true", help="shadow.stamp JSON on stdin")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = stamp_settings(args.config, args.settings_stdin, args.key_hex)
        counters = asyncio.run(serve(args.host, args.port, cfg))
    except ShadowcastError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(json.dumps({"host": args.host, "port": args.port, **counters}), file=sys.stderr)


if __name__ == "__main__":
    main()
