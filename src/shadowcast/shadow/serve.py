"""Run a STAMP reflector until SIGTERM: ``python -m shadowcast.shadow.serve HOST PORT [KEYHEX]``.

Used by the lab to put reflectors in edge namespaces as separate processes
(``ip netns exec NS python -m shadowcast.shadow.serve ...``).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from shadowcast.shadow.reflector import Reflector


async def serve(host: str, port: int, key: bytes | None) -> None:
    refl = Reflector(key=key)
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    key = bytes.fromhex(args[2]) if len(args) > 2 and args[2] else None
    asyncio.run(serve(args[0], int(args[1]), key))


if __name__ == "__main__":
    main()
