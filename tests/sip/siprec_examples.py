"""SIPREC messages after RFC 8068 §3.1.1 (a persistent-less recording session of a
two-party call): the SDP offer with one sendonly stream per participant, each with its
``a=label``, and the metadata snapshot naming the participants, their streams and who
sends which.  Shared by the sans-IO tests and the running-proxy tests (which put the
same body in a SIPp scenario), with the addresses and ports a test chooses."""

from __future__ import annotations

BOUNDARY = "foobar"
SESSION_ID = "hVpd7YQgRW2nD22h7q60JQ=="
SIP_SESSION_ID = "ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000"
ALICE = "srfBElmCRp2QB23b7Mpk0w=="
BOB = "zSfPoSvdSDCmU3A3TRDxAw=="
STREAM_96 = "UAAMm5GRQKSCMVvLyl4rFw=="  # label 96, sent by Bob
STREAM_97 = "i1Pz3to5hGk8fuXl+PbwCw=="  # label 97, sent by Alice


def sdp_offer(host: str = "198.51.100.1", ports: tuple[int, int] = (49170, 51372)) -> str:
    """The SRC's offer: stream 96 then stream 97, both PCMU, both sendonly."""
    return (
        "v=0\r\n"
        f"o=SRC 2890844526 2890844526 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {ports[0]} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=label:96\r\n"
        "a=sendonly\r\n"
        f"m=audio {ports[1]} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=label:97\r\n"
        "a=sendonly\r\n"
    )


def metadata(alice: str = "sip:alice@example.com", bob: str = "sip:bob@example.com") -> str:
    """The metadata snapshot of RFC 8068 §3.1.1: Alice sends stream 97, Bob 96."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="{SESSION_ID}">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;
                  remote=00000000000000000000000000000000</sipSessionID>
  </session>
  <participant participant_id="{ALICE}">
    <nameID aor="{alice}">
      <name xml:lang="it">Alice</name>
    </nameID>
  </participant>
  <participant participant_id="{BOB}">
    <nameID aor="{bob}">
      <name xml:lang="it">Bob</name>
    </nameID>
  </participant>
  <stream stream_id="{STREAM_96}" session_id="{SESSION_ID}">
    <label>96</label>
  </stream>
  <stream stream_id="{STREAM_97}" session_id="{SESSION_ID}">
    <label>97</label>
  </stream>
  <participantstreamassoc participant_id="{ALICE}">
    <send>{STREAM_97}</send>
    <recv>{STREAM_96}</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="{BOB}">
    <send>{STREAM_96}</send>
    <recv>{STREAM_97}</recv>
  </participantstreamassoc>
</recording>
"""


def multipart_body(sdp: str, xml: str) -> str:
    """The INVITE's body: the SDP part, then the metadata part (RFC 7866 §8.1)."""
    return (
        f"--{BOUNDARY}\r\n"
        "Content-Type: application/sdp\r\n"
        "\r\n"
        f"{sdp}"
        f"--{BOUNDARY}\r\n"
        "Content-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n"
        "\r\n"
        f"{xml}"
        f"--{BOUNDARY}--\r\n"
    )


CONTENT_TYPE = f"multipart/mixed;boundary={BOUNDARY}"
