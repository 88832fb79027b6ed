"""Information elements we read from NetFlow v9 / IPFIX templates.

Each known element maps to a *role*: what the decoder does with it. Unknown elements
(standard or enterprise) are skipped by offset, never interpreted. Keys are
``(enterprise number, element id)``; NetFlow v9 fields use enterprise 0 with the v9 type.

Roles and their kinds:

- ``uint``: unsigned big-endian integer of any declared size 1..8 (reduced-size encoding
  is handled: a counter declared as 4 bytes instead of 8 is still read right);
- ``v4`` / ``v6``: addresses (4 / 16 bytes);
- ``str``: a string (fixed-length or IPFIX variable-length), NULs stripped;
- ``raw``: an identifier of up to 8 bytes, also accepted variable-length, read as an
  unsigned integer (applicationId: classification engine id + selector);
- ``frame``: the first bytes of a sampled frame (dataLinkFrameSection, IE 315), parsed
  like an sFlow raw header.
"""

from __future__ import annotations

from typing import Final

NTOP_PEN: Final = 35632  # ntop / nProbe enterprise number
NTOP_V9_BASE: Final = 57472  # nProbe NetFlow v9 types are NTOP_V9_BASE + IPFIX element id

# role -> kind
ROLE_KIND: Final[dict[str, str]] = {
    "bytes": "uint",
    "packets": "uint",
    "bytes_total": "uint",
    "packets_total": "uint",
    "bytes_post": "uint",
    "packets_post": "uint",
    "bytes_init": "uint",
    "packets_init": "uint",
    "src4": "v4",
    "dst4": "v4",
    "src6": "v6",
    "dst6": "v6",
    "src_port": "uint",
    "dst_port": "uint",
    "proto": "uint",
    "tos": "uint",
    "tcp_flags": "uint",
    "src_as": "uint",
    "dst_as": "uint",
    "in_if": "uint",
    "out_if": "uint",
    "in_phys": "uint",
    "out_phys": "uint",
    "first_uptime": "uint",  # ms of sysUpTime
    "last_uptime": "uint",
    "start_s": "uint",
    "end_s": "uint",
    "start_ms": "uint",
    "end_ms": "uint",
    "start_ntp": "uint",  # NTP 64-bit timestamp (microseconds / nanoseconds IEs)
    "end_ntp": "uint",
    "start_delta_us": "uint",
    "end_delta_us": "uint",
    "duration_ms": "uint",
    "obs_s": "uint",  # observation time: when the exporter saw the event (firewall logs)
    "obs_ms": "uint",
    "obs_ntp": "uint",
    "sampling_interval": "uint",
    "sampler_random_interval": "uint",
    "sampling_pkt_interval": "uint",
    "sampling_pkt_space": "uint",
    "sampling_size": "uint",
    "sampling_population": "uint",
    "sampler_id": "uint",
    "selector_id": "uint",
    "sys_init_ms": "uint",
    "icmp_type_code": "uint",
    "app_id": "raw",
    "app_name": "str",
    "l7_proto_name": "str",
    "frame_size": "uint",
    "frame_section": "frame",
}

# (enterprise, element id) -> role; the last occurrence of a role in a template wins
# (see templates.compile_layout).
IES: Final[dict[tuple[int, int], str]] = {
    (0, 1): "bytes",  # octetDeltaCount / IN_BYTES
    (0, 2): "packets",  # packetDeltaCount / IN_PKTS
    (0, 85): "bytes_total",  # octetTotalCount
    (0, 86): "packets_total",  # packetTotalCount
    (0, 23): "bytes_post",  # postOctetDeltaCount / OUT_BYTES
    (0, 24): "packets_post",  # postPacketDeltaCount / OUT_PKTS
    # initiatorOctets / initiatorPackets: the initiator -> responder direction of a
    # firewall connection, i.e. source -> destination (Cisco ASA NSEL fwd_flow_delta_bytes).
    (0, 231): "bytes_init",
    (0, 298): "packets_init",
    (0, 4): "proto",
    (0, 5): "tos",
    (0, 6): "tcp_flags",
    (0, 7): "src_port",
    (0, 8): "src4",
    (0, 10): "in_if",
    (0, 11): "dst_port",
    (0, 12): "dst4",
    (0, 14): "out_if",
    (0, 16): "src_as",
    (0, 17): "dst_as",
    (0, 21): "last_uptime",  # flowEndSysUpTime / LAST_SWITCHED
    (0, 22): "first_uptime",  # flowStartSysUpTime / FIRST_SWITCHED
    (0, 27): "src6",
    (0, 28): "dst6",
    (0, 32): "icmp_type_code",  # icmpTypeCodeIPv4
    (0, 139): "icmp_type_code",  # icmpTypeCodeIPv6
    (0, 34): "sampling_interval",  # samplingInterval / SAMPLING_INTERVAL
    (0, 48): "sampler_id",  # samplerId / FLOW_SAMPLER_ID
    (0, 50): "sampler_random_interval",  # samplerRandomInterval
    (0, 95): "app_id",  # applicationId
    (0, 96): "app_name",  # applicationName
    (0, 150): "start_s",
    (0, 151): "end_s",
    (0, 152): "start_ms",
    (0, 153): "end_ms",
    (0, 154): "start_ntp",  # flowStartMicroseconds (dateTimeMicroseconds, NTP format)
    (0, 155): "end_ntp",
    (0, 156): "start_ntp",  # flowStartNanoseconds
    (0, 157): "end_ntp",
    (0, 158): "start_delta_us",  # flowStartDeltaMicroseconds
    (0, 159): "end_delta_us",
    (0, 160): "sys_init_ms",  # systemInitTimeMilliseconds
    (0, 161): "duration_ms",  # flowDurationMilliseconds
    (0, 322): "obs_s",  # observationTimeSeconds
    (0, 323): "obs_ms",  # observationTimeMilliseconds (Cisco ASA NSEL event_time_msec)
    (0, 324): "obs_ntp",  # observationTimeMicroseconds
    (0, 325): "obs_ntp",  # observationTimeNanoseconds
    (0, 252): "in_phys",  # ingressPhysicalInterface
    (0, 253): "out_phys",  # egressPhysicalInterface
    (0, 302): "selector_id",  # selectorId
    (0, 305): "sampling_pkt_interval",  # samplingPacketInterval
    (0, 312): "frame_size",  # dataLinkFrameSize
    (0, 315): "frame_section",  # dataLinkFrameSection
    (0, 306): "sampling_pkt_space",  # samplingPacketSpace
    (0, 309): "sampling_size",  # samplingSize (n of n-out-of-N, Cisco IOS XR)
    (0, 310): "sampling_population",  # samplingPopulation (N)
    # ntop / nProbe: L7_PROTO_NAME in IPFIX (PEN 35632, id 119) and NetFlow v9 (57591).
    (NTOP_PEN, 119): "l7_proto_name",
    (0, NTOP_V9_BASE + 119): "l7_proto_name",
    # Palo Alto Networks PAN-OS NetFlow v9: App-ID name (type 56701, 32-byte string).
    (0, 56701): "app_name",
}

# Elements we read from options data records (sampler tables, application names, boot time).
OPTION_ROLES: Final = frozenset(
    {
        "sampling_interval",
        "sampler_random_interval",
        "sampling_pkt_interval",
        "sampling_pkt_space",
        "sampling_size",
        "sampling_population",
        "sampler_id",
        "selector_id",
        "app_id",
        "app_name",
        "sys_init_ms",
    }
)

STR_MAX: Final = 64  # strings longer than this are truncated in the output columns
FRAME_MAX: Final = 128  # bytes of a sampled frame section kept


def role_of(enterprise: int, element: int) -> str | None:
    return IES.get((enterprise, element))
