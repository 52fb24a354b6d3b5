"""Kafka security settings reach every client: SASL PLAIN/SCRAM credentials and TLS with a CA
and a client certificate (the same options for producers, consumers and admin clients)."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from channel.kafka import client_options
from channel.settings import Settings


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kanal-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_with_a_client_certificate(tmp_path: Path, mechanism: str) -> None:
    cert, key = _self_signed(tmp_path)
    settings = Settings(
        kafka_bootstrap_servers="kafka:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="kanal",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=str(cert),
        kafka_ssl_certfile=str(cert),
        kafka_ssl_keyfile=str(key),
    )
    opts = client_options(settings)
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == mechanism
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("kanal", "s3cret")
    context = opts["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # our CA, not the system's


def test_plaintext_has_no_tls_or_sasl() -> None:
    opts = client_options(Settings(kafka_bootstrap_servers="kafka:9092"))
    assert opts["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in opts and "sasl_mechanism" not in opts


def test_unknown_mechanisms_and_protocols_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_sasl_mechanism="GSSAPI-NOT-SUPPORTED")
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="TLS")
