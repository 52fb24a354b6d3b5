"""Kafka security settings reach every client: SASL PLAIN/SCRAM credentials and TLS with a CA
and a client certificate (the same options for producers, consumers and admin clients)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from channel.kafka import client_options
from channel.settings import Settings
from support.tls import self_signed


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = self_signed(tmp_path)
    return Path(cert), Path(key)


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
