"""Encrypted, crash-safe recording storage.

``crypto``   the organisation key pair (X25519) and the wrapping of per-recording data keys
``segment``  the segment file format (pure: bytes in, bytes out; no threads, no clock)
``writer``   the writer thread the event loop hands audio blocks to
``write_reports``  what the writer tells its listeners (segments sealed, recordings ended)
``store``    the ``SegmentStore`` seam the writer writes through, and the local disk behind it
``reader``   verification, decryption and recovery of a recording directory
``export``   WAV and MP3 export of decoded audio

The byte layout is specified in ``docs/recording-format.md``.
"""
