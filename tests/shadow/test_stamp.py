"""STAMP wire format, reflector decisions, and sender <-> reflector over loopback."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowcast.shadow.reflector import Reflector
from shadowcast.shadow.stamp import Sender, StampRun, rfc3550_jitter
from shadowcast.shadow.wire import (
    AUTH_LEN,
    UNAUTH_LEN,
    ErrorEstimate,
    ReflectorTest,
    SenderTest,
    WireError,
    decode_reflector,
    decode_sender,
    encode_reflector,
    encode_sender,
    ntp_from_unix,
    unix_from_ntp,
)

KEY = b"k" * 32
PEER = ("127.0.0.1", 40000)


def _sender_pkt(seq: int, key: bytes | None, ts: float | None = None, ssid: int = 5) -> bytes:
    t = time.time() if ts is None else ts
    return encode_sender(SenderTest(seq, ntp_from_unix(t), 1, ssid), key)


def test_ntp_roundtrip_and_error_estimate() -> None:
    t = 1_790_000_000.123456
    assert abs(unix_from_ntp(ntp_from_unix(t)) - t) < 1e-6
    e = ErrorEstimate.from_seconds(1e-6)
    assert 1e-6 <= e.seconds < 2e-6 and e.multiplier > 0
    assert ErrorEstimate.decode(e.encode()) == e


@pytest.mark.parametrize(("key", "length"), [(None, UNAUTH_LEN), (KEY, AUTH_LEN)])
def test_wire_roundtrip(key: bytes | None, length: int) -> None:
    s = SenderTest(seq=3, ts=ntp_from_unix(1e9), err=0x0101, ssid=77)
    raw = encode_sender(s, key)
    assert len(raw) == length and decode_sender(raw, key) == s
    r = ReflectorTest(9, 1, 2, 77, 3, 3, s.ts, s.err, 64)
    assert decode_reflector(encode_reflector(r, key, size=300), key) == r
    assert len(encode_reflector(r, key, size=300)) == 300


def test_interoperates_with_scapy_contrib_stamp() -> None:
    stamp = pytest.importorskip("scapy.contrib.stamp")
    ts_unix = 1_790_000_000.25
    ntp_s = ntp_from_unix(ts_unix) / 2**32
    sp = stamp.STAMPSessionSenderTestUnauthenticated(seq=7, ts=ntp_s, ssid=99)
    parsed = decode_sender(bytes(sp))
    assert (parsed.seq, parsed.ssid, parsed.ts) == (7, 99, ntp_from_unix(ts_unix))
    assert bytes(sp) == encode_sender(SenderTest(7, parsed.ts, parsed.err, 99))
    refl = Reflector(clock=lambda: ts_unix + 0.001)
    reply = refl.handle(bytes(sp), PEER, ts_unix + 0.0005)
    assert reply is not None and len(reply) == UNAUTH_LEN
    rp = stamp.STAMPSessionReflectorTestUnauthenticated(reply)
    assert (rp.seq, rp.seq_sender, rp.ssid, rp.ttl_sender) == (0, 7, 99, 255)
    assert float(rp.ts_sender) == pytest.approx(ntp_s, abs=1e-6)
    assert float(rp.ts_rx) - float(rp.ts_sender) == pytest.approx(0.0005, abs=1e-6)
    assert float(rp.ts) - float(rp.ts_sender) == pytest.approx(0.001, abs=1e-6)


def test_reflector_symmetric_sizes_and_stateful_sequence() -> None:
    r = Reflector()
    for i, size in enumerate((44, 200, 1000)):
        raw = encode_sender(SenderTest(i, ntp_from_unix(time.time()), 1, 5), None, size)
        out = r.handle(raw, PEER, time.time())
        assert out is not None and len(out) == size
        assert decode_reflector(out).seq == i  # reflector's own counter
    out = r.handle(_sender_pkt(0, None, ssid=6), PEER, time.time())
    assert out is not None and decode_reflector(out).seq == 0  # a new session


def test_reflector_rate_limit_and_allow_list() -> None:
    now = [1000.0]
    r = Reflector(rate_pps=10.0, burst=20.0, allow=("127.0.0.0/8",), clock=lambda: now[0])
    answered = sum(r.handle(_sender_pkt(i, None), PEER, now[0]) is not None for i in range(50))
    assert answered == 20 and r.counters["dropped_rate"] == 30
    now[0] += 1.0  # 10 tokens back
    answered = sum(r.handle(_sender_pkt(i, None), PEER, now[0]) is not None for i in range(50))
    assert answered == 10
    assert r.handle(_sender_pkt(0, None), ("10.1.2.3", 5), now[0]) is None
    assert r.handle(_sender_pkt(0, None), ("::ffff:127.0.0.9", 5), now[0]) is not None
    assert r.counters["dropped_acl"] == 1


def test_replay_window_and_sender_restart() -> None:
    r = Reflector(key=KEY, replay_window=8)
    pkts = [_sender_pkt(i, KEY) for i in range(20)]
    assert all(r.handle(p, PEER, time.time()) is not None for p in pkts[:20:2])
    assert r.handle(pkts[19], PEER, time.time()) is not None  # out of order, in window
    assert r.handle(pkts[19], PEER, time.time()) is None  # replay in window
    assert r.handle(pkts[2], PEER, time.time()) is None  # older than window, old ts
    assert r.counters["dropped_replay"] == 2
    restart = _sender_pkt(0, KEY, ts=time.time() + 0.5)  # newer timestamp: a restart
    out = r.handle(restart, PEER, time.time())
    assert out is not None and decode_reflector(out, KEY).seq == 0
    assert r.handle(_sender_pkt(5, KEY, ts=time.time() - 100), PEER, time.time()) is None
    assert r.counters["dropped_stale"] == 1


def test_metrics_loss_per_direction_and_jitter() -> None:
    n = 10
    t1 = np.arange(n) * 0.01
    # forward loss of seq 3; reply to seq 6 lost on the way back
    rseq = np.array([0, 1, 2, -1, 3, 4, -1, 6, 7, 8])
    ok = rseq >= 0
    t2 = np.where(ok, t1 + 0.005, np.nan)
    t3 = t2 + 0.0001
    t4 = np.where(ok, t3 + 0.004, np.nan)
    run = StampRun(t1, t2, t3, t4, t4, rseq, 44, 2e-6)
    m = run.metrics()
    assert (m.sent, m.received) == (10, 8)
    assert m.loss_fwd == pytest.approx(0.1) and m.loss_bwd == pytest.approx(1 - 8 / 9)
    assert m.rtt_ms == pytest.approx(9.0) and m.owd_fwd_ms == pytest.approx(5.0)
    assert m.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert rfc3550_jitter(np.array([0.0, 0.016])) == pytest.approx(0.001)


@pytest.mark.parametrize(("key", "bind"), [(None, "127.0.0.1"), (KEY, "127.0.0.1"), (KEY, "::1")])
def test_sender_reflector_loopback(key: bytes | None, bind: str) -> None:
    async def main() -> tuple[StampRun, Reflector]:
        refl = Reflector(key=key)
        host, port = await refl.start(bind, 0)
        try:
            run = await Sender(host, port, key=key, size=128).run(40, 0.002)
        finally:
            refl.stop()
        return run, refl

    run, refl = asyncio.run(main())
    m = run.metrics()
    assert m.received == 40 and m.loss == 0.0 and m.loss_fwd == 0.0 and m.loss_bwd == 0.0
    assert 0.0 < m.rtt_ms < 50.0
    assert -0.5 < m.owd_fwd_ms < 50.0 and m.owd_err_ms > 0
    assert np.isfinite(m.jitter_ms)
    assert refl.counters["reflected"] == 40 and refl.dropped == 0
    # kernel receive stamps precede the user-space read
    assert np.all(run.t4 <= run.t4_user + 1e-6)


def test_authenticated_reflector_drops_bad_packets_on_the_wire() -> None:
    good_ts = time.time()
    cases = {
        "auth": _sender_pkt(1, b"wrong-key", ts=good_ts),
        "truncated": _sender_pkt(2, KEY, ts=good_ts)[:100],
        "oversized": _sender_pkt(3, KEY, ts=good_ts) + bytes(2000),
    }
    valid = _sender_pkt(4, KEY, ts=good_ts)

    async def main() -> tuple[list[bytes], Reflector]:
        refl = Reflector(key=KEY, max_size=1472)
        host, port = await refl.start("127.0.0.1", 0)
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.setblocking(False)
        cli.connect((host, port))
        got: list[bytes] = []
        try:
            for raw in [*cases.values(), valid, valid]:  # the second valid one is a replay
                cli.send(raw)
            await asyncio.sleep(0.3)
            while True:
                try:
                    got.append(cli.recv(4096))
                except BlockingIOError:
                    break
        finally:
            cli.close()
            refl.stop()
        return got, refl

    got, refl = asyncio.run(main())
    assert len(got) == 1 and decode_reflector(got[0], KEY).sender_seq == 4
    assert decode_reflector(got[0], KEY).sender_ttl == 64  # the TTL it arrived with
    for kind in ("auth", "truncated", "oversized", "replay"):
        assert refl.counters[f"dropped_{kind}"] == 1, kind
    assert refl.counters["reflected"] == 1


def test_wire_errors_name_the_problem() -> None:
    with pytest.raises(WireError) as ei:
        decode_sender(b"\x00" * 10, KEY)
    assert ei.value.kind == "truncated"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=1600), port=st.integers(0, 65535))
def test_random_bytes_never_crash_or_get_answered_when_authenticated(
    data: bytes, port: int
) -> None:
    auth = Reflector(key=KEY)
    assert auth.handle(data, ("127.0.0.1", port), time.time()) is None
    assert auth.dropped == 1
    plain = Reflector()
    out = plain.handle(data, ("127.0.0.1", port), time.time())
    assert out is None or len(out) == len(data)


def test_replay_window_is_keyed_by_ssid_not_by_source_tuple() -> None:
    r = Reflector(key=KEY)
    pkt = _sender_pkt(0, KEY)
    assert r.handle(pkt, PEER, time.time()) is not None
    for peer in (("127.0.0.1", 40001), ("127.0.0.12", 40000), ("::1", 862)):
        assert r.handle(pkt, peer, time.time()) is None, peer
    assert r.counters["dropped_replay"] == 3
    # another SSID is another session: its own window and reflector sequence
    out = r.handle(_sender_pkt(0, KEY, ssid=6), ("127.0.0.12", 40000), time.time())
    assert out is not None and decode_reflector(out, KEY).seq == 0


def test_sender_restart_does_not_reopen_the_earlier_run() -> None:
    t0 = time.time() - 10
    r = Reflector(key=KEY, replay_window=64)
    old = [_sender_pkt(i, KEY, ts=t0 + i * 0.1) for i in range(10)]
    assert all(r.handle(p, PEER, time.time()) is not None for p in old)
    # the sender restarts at sequence 0, later than anything seen: a new run
    out = r.handle(_sender_pkt(0, KEY, ts=t0 + 5), PEER, time.time())
    assert out is not None and decode_reflector(out, KEY).seq == 0
    # the earlier run's packets carry higher sequence numbers, but older timestamps
    assert all(r.handle(p, ("127.0.0.1", 40001), time.time()) is None for p in old[1:])
    assert r.counters["dropped_replay"] == 9
    new = [_sender_pkt(i, KEY, ts=t0 + 5 + i * 0.1) for i in range(1, 5)]
    assert all(r.handle(p, PEER, time.time()) is not None for p in new)
    assert r.handle(new[0], PEER, time.time()) is None


def test_ssid_state_is_kept_while_a_replay_could_still_be_fresh() -> None:
    now = [1_800_000_000.0]
    r = Reflector(key=KEY, max_age_s=5.0, session_idle_s=1.0, clock=lambda: now[0])
    pkt = _sender_pkt(0, KEY, ts=now[0])
    assert r.handle(pkt, PEER, now[0]) is not None
    now[0] += 3.0  # idle longer than session_idle_s, still within max_age_s
    assert r.handle(pkt, ("127.0.0.1", 40002), now[0]) is None
    assert r.counters["dropped_replay"] == 1
    now[0] += 3.0  # now every packet of SSID 5 is stale: its state may go
    assert r.handle(pkt, PEER, now[0]) is None and r.counters["dropped_stale"] == 1
    assert r.handle(_sender_pkt(0, KEY, ts=now[0], ssid=9), PEER, now[0]) is not None
    assert list(r._fresh_by_ssid) == [9]
