"""Property tests of the STAMP wire format: any datagram decodes or raises WireError, never
another exception; encode/decode round-trip; a packet changed anywhere in its covered part
never passes authentication."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostile import EDITS, Edit, mutate
from shadowcast.shadow.wire import (
    AUTH_LEN,
    UNAUTH_LEN,
    ReflectorTest,
    SenderTest,
    WireError,
    decode_reflector,
    decode_sender,
    encode_reflector,
    encode_sender,
)

pytestmark = pytest.mark.fuzz

KEY = bytes(range(32))
U32, U64, U16, U8 = (st.integers(0, (1 << b) - 1) for b in (32, 64, 16, 8))
senders = st.builds(SenderTest, U32, U64, U16, U16)
reflectors = st.builds(ReflectorTest, U32, U64, U16, U16, U64, U32, U64, U16, U8)
SEEDS = [
    encode_sender(SenderTest(7, 1 << 63, 0x8001, 3)),
    encode_sender(SenderTest(7, 1 << 63, 0x8001, 3), KEY),
    encode_reflector(ReflectorTest(7, 5, 1, 3, 9, 7, 1 << 63, 0x8001, 64)),
    encode_reflector(ReflectorTest(7, 5, 1, 3, 9, 7, 1 << 63, 0x8001, 64), KEY),
]


def _decode_all(buf: bytes) -> None:
    for decode in (decode_sender, decode_reflector):
        for key in (None, KEY):
            try:
                decode(buf, key)
            except WireError as exc:
                assert exc.kind in ("truncated", "auth")


@given(data=st.binary(max_size=2 * AUTH_LEN))
def test_random_datagrams(data: bytes) -> None:
    _decode_all(data)


@given(seed=st.sampled_from(SEEDS), edits=EDITS)
@example(seed=SEEDS[1], edits=[("cut", AUTH_LEN - 1, 0, b"")]).via("boundary")
@example(seed=SEEDS[0], edits=[("cut", UNAUTH_LEN - 1, 0, b"")]).via("boundary")
def test_mutated_datagrams(seed: bytes, edits: list[Edit]) -> None:
    _decode_all(mutate(seed, edits))


@given(p=senders, size=st.integers(0, 1500), authenticated=st.booleans())
def test_sender_roundtrip(p: SenderTest, size: int, authenticated: bool) -> None:
    key = KEY if authenticated else None
    buf = encode_sender(p, key, size)
    assert len(buf) == max(size, AUTH_LEN if key else UNAUTH_LEN)
    assert decode_sender(buf, key) == p


@given(p=reflectors, size=st.integers(0, 1500), authenticated=st.booleans())
def test_reflector_roundtrip(p: ReflectorTest, size: int, authenticated: bool) -> None:
    key = KEY if authenticated else None
    assert decode_reflector(encode_reflector(p, key, size), key) == p


@given(p=senders, pos=st.integers(0, AUTH_LEN - 1), bit=st.integers(0, 7))
def test_any_changed_bit_fails_authentication(p: SenderTest, pos: int, bit: int) -> None:
    buf = bytearray(encode_sender(p, KEY))
    buf[pos] ^= 1 << bit
    with pytest.raises(WireError) as ei:
        decode_sender(bytes(buf), KEY)
    assert ei.value.kind == "auth"  # a bit of the covered part or of the HMAC itself
