"""Offline transcripts (issue 16): each channel of a recording transcribed on its own by
a local speech-to-text engine, merged by time into text and WebVTT with speaker labels.

- :mod:`.model` finds the model (installed packages, or a configured folder) and
  verifies its SHA-256 before anything is loaded;
- :mod:`.engine` is the engine interface and its default, faster-whisper;
- :mod:`.speech` picks the speech out of a channel with webrtcvad, so silence is never
  transcribed (and cannot be hallucinated into words);
- :mod:`.transcript` is the pure part: cues, gaps, text and WebVTT;
- :mod:`.transcribe` joins them for one recording's decoded PCM.
"""
