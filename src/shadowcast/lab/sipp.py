"""SIPp scenarios of one call with audio both ways (``rtp_stream``, 20 ms packets).

The caller (UAC) sends INVITE with an SDP offer, both sides stream the same G.711 file in
a loop from ACK until the caller hangs up after ``duration_s``; the callee (UAS) answers.
"""

from __future__ import annotations

from pathlib import Path

_SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP {pt}
a=rtpmap:{pt} {codec}/8000
"""
_HDR = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: alice <sip:alice@[local_ip]:[local_port]>;tag=[call_number]
To: bob <sip:bob@[remote_ip]:[remote_port]>{peer_tag}
Call-ID: [call_id]
CSeq: {cseq}
Contact: sip:alice@[local_ip]:[local_port]
Max-Forwards: 70
"""
_REPLY = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]{tag}
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
"""


def _send(text: str, retrans: bool = False) -> str:
    r = ' retrans="500"' if retrans else ""
    return f"  <send{r}><![CDATA[\n{text}\n]]></send>\n"


def _stream(audio: Path, pt: int, codec: str) -> str:
    return f'  <nop><action><exec rtp_stream="{audio},-1,{pt},{codec}/8000"/></action></nop>\n'


_PAUSE = '  <nop><action><exec rtp_stream="pause"/></action></nop>\n'


def scenarios(home: Path, audio: Path, pt: int, duration_s: float) -> tuple[Path, Path]:
    """Write ``uac.xml`` and ``uas.xml`` in ``home``; payload type 0 (PCMU) or 8 (PCMA)."""
    codec = "PCMU" if pt == 0 else "PCMA"
    sdp = _SDP.format(pt=pt, codec=codec)
    invite = ("INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0\n"
              + _HDR.format(peer_tag="", cseq="1 INVITE")
              + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + sdp)  # fmt: skip
    ack = (
        "ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0\n"
        + _HDR.format(peer_tag="[peer_tag_param]", cseq="1 ACK")
        + "Content-Length: 0\n"
    )
    bye = (
        "BYE sip:bob@[remote_ip]:[remote_port] SIP/2.0\n"
        + _HDR.format(peer_tag="[peer_tag_param]", cseq="2 BYE")
        + "Content-Length: 0\n"
    )
    uac = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="shadowcast uac">\n'
        + _send(invite, True)
        + '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
        + '  <recv response="200" rtd="true"/>\n'
        + _send(ack)
        + _stream(audio, pt, codec)
        + f'  <pause milliseconds="{int(duration_s * 1000)}"/>\n'
        + _PAUSE
        + _send(bye, True)
        + '  <recv response="200" crlf="true"/>\n</scenario>\n'
    )
    ok_sdp = (_REPLY.format(tag=";tag=[pid]SIPpTag01[call_number]")
              + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + sdp)  # fmt: skip
    uas = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="shadowcast uas">\n'
        '  <recv request="INVITE" crlf="true"/>\n'
        + _send(ok_sdp)
        + '  <recv request="ACK" crlf="true"/>\n'
        + _stream(audio, pt, codec)
        + '  <recv request="BYE"/>\n'
        + _PAUSE
        + _send(_REPLY.format(tag="") + "Content-Length: 0\n")
        + "</scenario>\n"
    )
    (home / "uac.xml").write_text(uac)
    (home / "uas.xml").write_text(uas)
    return home / "uac.xml", home / "uas.xml"
