"""SIP over TLS end to end (issue 18): baresip as the caller and as the call taker, both
reaching ``recproxy serve`` over TLS only, with certificates of the test CA.

The caller dials a ``sips:`` URI at recproxy's TLS port; recproxy invites the call taker
at its ``sips:`` URI over a TLS connection of its own, verifying the phone's certificate
and host name against ``[sip] tls_ca``.  The call is recorded like any other: caller
left, call taker right, each channel holding the tone its phone sent.  Nothing went over
recproxy's UDP SIP port, and while the call was up recproxy held two TLS connections.
Either phone hangs up: recproxy's BYE to the other goes over TLS too.
"""

from __future__ import annotations

import time

import pytest

from tests.sip.tls_ca import CertAuthority

from .conftest import NOTICE_SECONDS, E2e
from .pcap import LoopbackCapture
from .phones import CALLER_HZ, TAKER_HZ, Phones, dominant_frequency, sip_packets
from .proxy_process import ProxySettings
from .test_media_addresses import metric
from .test_phones import HZ_TOLERANCE, assert_notice_heard, assert_voices, hang_up, the_recording

pytestmark = pytest.mark.phones

TALK_S = 2.0


def tls_settings(e2e: E2e, ca: CertAuthority, taker_uri: str) -> ProxySettings:
    tls_port = e2e.ports.spare_sip(5)
    return ProxySettings(
        sip=(
            f'tls_listen = "127.0.0.1:{tls_port}"\n'
            f'tls_cert = "{ca.server.cert}"\n'
            f'tls_key = "{ca.server.key}"\n'
            f'tls_ca = "{ca.ca}"\n'
        ),
        call_taker=taker_uri.format(port=e2e.ports.taker_sip + 1),
    )


# baresip listens for TLS at its SIP port + 1.  baresip 1.0 takes a sips: INVITE, but
# never sends its own BYE in that dialog (to our sips: Contact: tcpdump sees nothing
# leave, over any transport), so the call taker hangs up in a dialog made with the
# legacy transport=tls form.
@pytest.mark.parametrize(
    ("taker_uri", "hangs_up"),
    [
        ("sips:calltaker@127.0.0.1:{port}", "caller"),
        ("sip:calltaker@127.0.0.1:{port};transport=tls", "taker"),
    ],
    ids=["sips-caller-hangs-up", "transport-tls-taker-hangs-up"],
)
def test_a_call_over_tls_on_both_legs_is_recorded_on_the_right_channels(
    e2e: E2e, phones: Phones, tls_ca: CertAuthority, taker_uri: str, hangs_up: str
) -> None:
    proxy = e2e.proxy(tls_settings(e2e, tls_ca, taker_uri))
    udp: LoopbackCapture = e2e.capture("sip-udp.pcap", f"udp port {e2e.ports.sip}")
    phone_tls = (tls_ca.server.combined, tls_ca.ca)
    taker = phones.taker("baresip", tls=phone_tls)
    caller = phones.caller("baresip", tls=phone_tls)

    # baresip 1.0 dials no sips: URI: the legacy transport=tls form
    caller.dial(f"sip:100@127.0.0.1:{e2e.ports.spare_sip(5)};transport=tls")
    caller.wait_event("established", timeout=10)
    taker.wait_event("established", timeout=NOTICE_SECONDS + 10)
    assert metric(proxy, "recproxy_sip_tls_connections") == 2
    time.sleep(TALK_S)
    hang_up(*((caller, taker) if hangs_up == "caller" else (taker, caller)))

    assert sip_packets(udp.stop()) == []  # not one SIP message in the clear over UDP
    row, wav = the_recording(e2e, proxy)
    assert row["state"] == "complete", row
    assert wav.seconds >= TALK_S
    assert_voices(wav)
    assert_notice_heard(caller, e2e.notice.samples)
    assert abs(dominant_frequency(taker.received()) - CALLER_HZ) <= HZ_TOLERANCE
    assert abs(dominant_frequency(caller.received()[-8000:]) - TAKER_HZ) <= HZ_TOLERANCE
    assert metric(proxy, "recproxy_sip_transport_errors_total" + '{kind="tls_connect_failed"}') == 0
