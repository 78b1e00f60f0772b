"""A test certificate authority, made with ``cryptography`` when a test asks for one:
a CA, a server certificate for 127.0.0.1 / ::1 / localhost, a client certificate, and
certificates that must be refused (another CA's, an expired one, one for another host).

Any test can use it (``make_ca(folder)``, or the ``tls_ca`` fixture of
``tests/sip/conftest.py``): the files are PEM, ready for ``[sip] tls_cert``/``tls_key``/
``tls_ca``, baresip's ``sip_certificate``/``sip_cafile`` (which wants the certificate
and key in one file: ``combined``) or ``ssl.SSLContext``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pair:
    """A certificate and its key as PEM files, and both in one file (baresip's form)."""

    cert: Path
    key: Path
    combined: Path


@dataclass(frozen=True)
class CertAuthority:
    ca: Path  # the CA certificate: the trust anchor to configure
    server: Pair  # 127.0.0.1, ::1 and localhost
    client: Pair
    other_host: Pair  # signed by the CA, but for sip.example.net only
    expired: Pair  # signed by the CA, for 127.0.0.1, expired yesterday
    rogue: Pair  # for 127.0.0.1, signed by a CA nobody trusts
    rogue_ca: Path


def make_ca(folder: Path) -> CertAuthority:
    """Write a CA and its certificates under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _ca("recproxy test CA", now)
    rogue_key, rogue_cert = _ca("rogue CA", now)
    loopback = ["127.0.0.1", "::1", "localhost"]

    ca, rogue = (ca_key, ca_cert), (rogue_key, rogue_cert)
    return CertAuthority(
        ca=_write_cert(folder / "ca.pem", ca_cert),
        server=_write(folder, "server", *_leaf(*ca, now, loopback, server=True)),
        client=_write(folder, "client", *_leaf(*ca, now, ["client.test"], server=False)),
        other_host=_write(folder, "other", *_leaf(*ca, now, ["sip.example.net"], server=True)),
        expired=_write(folder, "expired", *_leaf(*ca, now, loopback, server=True, expired=True)),
        rogue=_write(folder, "rogue", *_leaf(*rogue, now, loopback, server=True)),
        rogue_ca=_write_cert(folder / "rogue-ca.pem", rogue_cert),
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
    names: list[str],
    *,
    server: bool,
    expired: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    start, end = (now - 30 * _DAY, now - _DAY) if expired else (now - _DAY, now + 30 * _DAY)
    # a SIP element is often both client and server of TLS connections
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write(
    folder: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Pair:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / f"{name}-key.pem").write_bytes(key_pem)
    (folder / f"{name}.pem").write_bytes(cert_pem)
    (folder / f"{name}-combined.pem").write_bytes(cert_pem + key_pem)
    return Pair(folder / f"{name}.pem", folder / f"{name}-key.pem", folder / f"{name}-combined.pem")
