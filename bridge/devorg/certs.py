"""Key material of the local org, generated once per data dir with `cryptography`.

- a CA (ca.pem) that clients pass as their CA bundle,
- the HTTPS server certificate it signs (SAN 127.0.0.1, ::1, localhost),
- the connected app's JWT key pair: jwt_private_key.pem is what the bridge signs its JWT bearer
  assertions with; jwt_certificate.pem is the certificate "uploaded" to the connected app, the
  one the token endpoint verifies signatures against.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class KeyMaterial:
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    jwt_private_key_path: Path
    jwt_certificate_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sfbridge devorg"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_key_material(data_dir: Path) -> KeyMaterial:
    """Create the CA, server certificate and JWT key pair in data_dir unless they exist."""
    km = KeyMaterial(
        ca_path=data_dir / "ca.pem",
        server_cert_path=data_dir / "server.pem",
        server_key_path=data_dir / "server-key.pem",
        jwt_private_key_path=data_dir / "jwt_private_key.pem",
        jwt_certificate_path=data_dir / "jwt_certificate.pem",
    )
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    if not (km.ca_path.exists() and km.server_cert_path.exists() and km.server_key_path.exists()):
        # EC keys: generating them is instant, which keeps first start well under 2 s.
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("sfbridge devorg CA"))
            .issuer_name(_name("sfbridge devorg CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca_cert.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        km.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        km.server_cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        _write_private(km.server_key_path, _pem_key(server_key))
    if not (km.jwt_private_key_path.exists() and km.jwt_certificate_path.exists()):
        # RS256 is what Salesforce's JWT bearer flow requires, so this one is RSA.
        jwt_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwt_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("sfbridge connected app"))
            .issuer_name(_name("sfbridge connected app"))
            .public_key(jwt_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(jwt_key, hashes.SHA256())
        )
        _write_private(km.jwt_private_key_path, _pem_key(jwt_key))
        km.jwt_certificate_path.write_bytes(jwt_cert.public_bytes(serialization.Encoding.PEM))
    return km


def jwt_public_key(km: KeyMaterial) -> rsa.RSAPublicKey:
    cert = x509.load_pem_x509_certificate(km.jwt_certificate_path.read_bytes())
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key
