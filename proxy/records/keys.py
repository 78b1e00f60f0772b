"""Key operations are audited (P5): who made which recording key pair, named by the
SHA-256 of its public key — never the key itself, and never anything of the private key."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..storage import crypto
from ..storage.catalog.audit import AuditEntry, AuditLog


async def audit_key_generated(
    audit: AuditLog, public_key: X25519PublicKey, *, actor: str
) -> AuditEntry:
    """The ``key.generate`` entry for a key pair just made (``recproxy keygen``, or the
    development key ``serve`` makes when none is configured)."""
    return await audit.append(
        actor=actor,
        action="key.generate",
        object=f"key:{crypto.key_fingerprint(public_key)}",
        detail={"public_key_sha256": crypto.public_key_sha256(public_key)},
    )
