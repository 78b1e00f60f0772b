"""recproxy: a SIP/RTP recording proxy."""

__version__ = "0.1.0"
