"""Media: RTP/RTCP packets, G.711, DTMF, jitter buffering, prompts, VAD and the recorder.

The cores here are pure: no sockets, no tasks, no clock.  Time comes in as
``now: float`` seconds; bytes come in and out.  The asyncio adapters that own the RTP
sockets drive them.
"""
