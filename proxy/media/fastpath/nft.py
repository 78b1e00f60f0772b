"""libnftables in this process, through ctypes.

The ``nft`` command costs about 3.2 ms per call's rules here; the library it is built on
(``libnftables.so.1``, the same C library Debian's ``python3-nftables`` wraps) about
0.09 ms.  ``python3-nftables`` is a Debian package outside the virtualenv and speaks
JSON only, so this is a thin typed wrapper of the four C calls we need: a context,
buffered output and errors, and running a buffer of commands — one buffer is one
netlink batch, so it is applied whole or not at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util

LIBRARY = "libnftables.so.1"


class NftError(RuntimeError):
    """nftables refused a batch (the message is libnftables' own error text)."""


class Nftables:
    """One libnftables context (not thread-safe: use it from the event loop only)."""

    def __init__(self, library: str = LIBRARY) -> None:
        lib = ctypes.CDLL(library)  # OSError when nftables is not installed
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        context = lib.nft_ctx_new(0)
        if not context:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(context)
        lib.nft_ctx_buffer_error(context)
        self._lib = lib
        self._context: int | None = context

    def run(self, commands: str) -> str:
        """Run ``commands`` (nft syntax, one batch); their output, or ``NftError``."""
        if self._context is None:
            raise NftError("the nftables context is closed")
        status = self._lib.nft_run_cmd_from_buffer(self._context, commands.encode())
        output = self._lib.nft_ctx_get_output_buffer(self._context) or b""
        if status != 0:
            error = self._lib.nft_ctx_get_error_buffer(self._context) or b""
            raise NftError(error.decode(errors="replace").strip() or f"nft status {status}")
        return str(output.decode(errors="replace"))

    def close(self) -> None:
        if self._context is not None:
            self._lib.nft_ctx_free(self._context)
            self._context = None
