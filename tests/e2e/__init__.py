"""End-to-end tests: real ``recproxy serve`` processes, SIPp as caller and call taker,
tcpdump on loopback (run as root, with sipp, tcpdump and iproute2 installed)::

    .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider

``test_recorded_call.py`` (the recorded call) and ``test_recording_control.py`` (the
call taker's recording switch, do-not-record, outbound calls, services) hold the tests;
``conftest.py`` the per-test harness;
``proxy_process.py``, ``sipp.py``, ``sip_client.py``, ``pcap.py``, ``audio.py`` and
``netns.py`` the tools it uses; ``scenarios/`` the SIPp scenarios.
"""
