"""TLS for SIP (SIPS, RFC 3261 §26.2, RFC 5630): the ``ssl.SSLContext``s, built once at
start from the configured PEM files.

Only TLS 1.2 and later, with forward-secret AEAD cipher suites for TLS 1.2 (TLS 1.3's
suites are all of that kind).  Outbound connections always verify the peer's
certificate and host name: against ``ca`` when given, else the system's trust store.
Inbound client certificates are asked for and verified against ``ca`` only when
``verify_clients`` is set (a desk phone rarely has one).

A bad file or a key that does not belong to the certificate is a ``TlsSetupError``
naming the setting, so that start-up fails with one clear line instead of the first
handshake failing with an OpenSSL code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# ECDHE only (forward secrecy), AEAD only: what RFC 7525 §4.2 recommends for TLS 1.2.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsSetupError(ValueError):
    """A TLS setting cannot be used; the message names the setting (``sip.tls_key``)."""


@dataclass(frozen=True)
class TlsSettings:
    cert: Path  # our certificate chain (PEM), leaf first
    key: Path  # its private key (PEM, not encrypted)
    ca: Path | None = None  # trust anchors for peers; None: the system's, outbound only
    verify_clients: bool = False  # inbound: require a client certificate signed by ``ca``
    handshake_seconds: float = 5.0  # a handshake not done by then is abandoned


@dataclass(frozen=True)
class TlsContexts:
    """The two contexts a transport needs: to accept and to connect."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    handshake_seconds: float


def load_contexts(settings: TlsSettings) -> TlsContexts:
    """Build both contexts; ``TlsSetupError`` naming the setting at fault."""
    if settings.verify_clients and settings.ca is None:
        raise TlsSetupError("sip.tls_verify_clients: needs sip.tls_ca (the clients' CA)")
    server = _context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(server, settings)
    if settings.verify_clients:
        _load_ca(server, settings.ca)
        server.verify_mode = ssl.CERT_REQUIRED
    client = _context(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    if settings.ca is not None:
        _load_ca(client, settings.ca)
    else:
        client.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load_chain(client, settings)  # presented when a peer asks for a client certificate
    return TlsContexts(server, client, settings.handshake_seconds)


def _context(protocol: int) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _load_chain(context: ssl.SSLContext, settings: TlsSettings) -> None:
    _readable("sip.tls_cert", settings.cert)
    _readable("sip.tls_key", settings.key)
    try:
        context.load_cert_chain(settings.cert, settings.key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsSetupError(
                f"sip.tls_key: {settings.key} is not the key of sip.tls_cert {settings.cert}"
            ) from None
        raise TlsSetupError(
            f"sip.tls_cert/sip.tls_key: {settings.cert}, {settings.key}: not a PEM certificate "
            f"and its unencrypted key ({exc.reason or exc})"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path | None) -> None:
    assert ca is not None
    _readable("sip.tls_ca", ca)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise TlsSetupError(
            f"sip.tls_ca: {ca}: not a PEM CA bundle ({exc.reason or exc})"
        ) from None


def _readable(setting: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TlsSetupError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


class ServerTlsSession:
    """The server side of TLS on a connection whose bytes we read ourselves
    (``ssl.MemoryBIO``): ciphertext in with ``receive``, plaintext out; plaintext in
    with ``send``, ciphertext to write out with ``outgoing``.

    Why not ``loop.start_tls``: the connection must be checked (limits, the source's
    token bucket) before any crypto, and bytes the peer sent before ``start_tls`` took
    over would be lost to the handshake (they are, with uvloop).  Here nothing is lost
    and the transport decides, byte for byte, when the handshake starts."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.closed = False  # the peer sent close_notify

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext; the plaintext it completes (maybe none).  Raises
        ``ssl.SSLError`` when the handshake fails or the record layer is broken."""
        self._incoming.write(data)
        if not self.established:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._ssl.read(65_536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plaintext: bytes) -> None:
        self._ssl.write(plaintext)

    @property
    def peer_verified(self) -> bool:
        """The client presented a certificate that verified (``verify_clients``)."""
        return self.established and bool(self._ssl.getpeercert())

    def outgoing(self) -> bytes:
        """Ciphertext to write to the socket: handshake records, or sealed ``send``s."""
        return self._outgoing.read()
