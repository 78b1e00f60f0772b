"""Errors of the recording use cases, defined here so that both the call (which raises
them) and the HTTP API (which maps them to a status) import downward, never across."""

from __future__ import annotations


class RecordingActionError(Exception):
    """The recording cannot take that action now (the API answers 409)."""
