"""Signed export bundles (issue 16): one folder a recipient can prove intact, offline.

A bundle is a folder of exported files plus three of its own:

- ``manifest.json``: canonical JSON (RFC 8785 for the types used: objects with sorted
  keys, no whitespace, UTF-8, integers and strings only) naming every other file with its
  size and SHA-256, the case, the recordings and parts, who exported it, when and why,
  and the SHA-256 of the signing key;
- ``manifest.sig``: canonical JSON holding the manifest's SHA-256 and the Ed25519
  signature, by the installation's export-signing key, of ``SIGNED_LABEL`` followed by
  that SHA-256 in hex.  Signing the digest (not the file) lets a verifier say which of
  the two files was altered: a signature that fails means ``manifest.sig``, a digest
  that differs means ``manifest.json``;
- ``signing-key.pub``: the signer's public key (PEM), so a recipient holding only the
  organisation's published SHA-256 of it can pin it.

:class:`BundleDraft` (``writer.py``) writes into a hidden sibling folder and renames it onto the
bundle's name only once every file, the manifest and the signature are written and
fsynced: a crash or a full disk leaves no folder under the bundle's name, so nothing
partial ever looks complete.  :func:`verify_bundle` (``verify.py``) checks a folder or a
ZIP of it; ``format.py`` holds what both agree on, and ``docs/bundle-format.md``
specifies it for an independent verifier.
"""

from .format import (
    MANIFEST,
    RESERVED,
    SIGNATURE,
    SIGNED_LABEL,
    SIGNING_KEY,
    BundleFile,
    BundleInfo,
    BundleRecording,
    Gap,
    canonical_json,
    check_file_name,
)
from .verify import BundleFault, BundleVerdict, Problem, TrustedKey, verify_bundle
from .writer import BundleDraft, BundleError, SealedBundle, in_worker, zip_bundle

__all__ = [
    "MANIFEST",
    "RESERVED",
    "SIGNATURE",
    "SIGNED_LABEL",
    "SIGNING_KEY",
    "BundleDraft",
    "BundleError",
    "BundleFault",
    "BundleFile",
    "BundleInfo",
    "BundleRecording",
    "BundleVerdict",
    "Gap",
    "Problem",
    "SealedBundle",
    "TrustedKey",
    "canonical_json",
    "check_file_name",
    "in_worker",
    "verify_bundle",
    "zip_bundle",
]
