"""Key operations are audited (P5): who made which key pair, named by the SHA-256 of its
public key — never the key itself, and never anything of the private key.

Two kinds of key pair exist: the organisation's recording key (X25519, ``recproxy
keygen``) and the export-signing key (Ed25519, ``recproxy keygen --signing``).  The
signing key's entry says ``"kind": "signing"``; the recording key's entry has no kind, as
every one written before the signing key existed."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..storage import crypto
from ..storage.catalog.audit import AuditEntry, AuditLog


async def audit_key_generated(
    audit: AuditLog, public_key: crypto.PublicKey, *, actor: str
) -> AuditEntry:
    """The ``key.generate`` entry for a key pair just made (``recproxy keygen``, or the
    development key ``serve`` makes when none is configured)."""
    detail: dict[str, object] = {"public_key_sha256": crypto.public_key_sha256(public_key)}
    if isinstance(public_key, Ed25519PublicKey):
        detail["kind"] = "signing"
    return await audit.append(
        actor=actor,
        action="key.generate",
        object=f"key:{crypto.key_fingerprint(public_key)}",
        detail=detail,
    )
