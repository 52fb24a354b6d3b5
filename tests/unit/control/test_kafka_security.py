"""Kafka security settings reach every client: SASL PLAIN/SCRAM credentials and TLS with a CA
and a client certificate (the same options for producers, consumers and admin clients); and
Kafka's refusals (credentials, the broker's certificate, a missing ACL) become one line."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    NodeNotReadyError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from pydantic import ValidationError

from channel.errors import AccessDenied
from channel.kafka import access_denied, client_options, delete_topic
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


def _untrusted() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


def _caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "line"),
    [
        pytest.param(
            SaslAuthenticationFailed("invalid credentials with SASL mechanism SCRAM-SHA-512"),
            "authentication failed: invalid credentials with SASL mechanism SCRAM-SHA-512",
            id="wrong-password",
        ),
        pytest.param(
            _untrusted(),
            "TLS certificate verify failed: unable to get local issuer certificate (KANAL_KAFKA_SSL_CAFILE"
            " must hold the CA that signed the broker's certificate)",
            id="untrusted-broker-certificate",
        ),
        pytest.param(
            TopicAuthorizationFailedError("kanal.resources"),
            "not authorized to access topic kanal.resources",
            id="topic",
        ),
        pytest.param(
            TopicAuthorizationFailedError({"b", "a"}),
            "not authorized to access topic a, b",
            id="topics-as-aiokafka-names-them",
        ),
        pytest.param(
            GroupAuthorizationFailedError("kanal.ticks.scheduler"),
            "not authorized to access consumer group kanal.ticks.scheduler",
            id="group",
        ),
        pytest.param(
            ClusterAuthorizationFailedError(),
            "not authorized for a cluster operation (an idempotent producer needs WRITE on a topic,"
            " or IDEMPOTENT_WRITE on the cluster)",
            id="producer-id",
        ),
        pytest.param(
            ExceptionGroup("service", [ValueError("other"), TopicAuthorizationFailedError("t")]),
            "not authorized to access topic t",
            id="inside-a-task-group",
        ),
        pytest.param(
            _caused(RuntimeError("wrapped"), GroupAuthorizationFailedError("g")),
            "not authorized to access consumer group g",
            id="as-a-cause",
        ),
        pytest.param(
            AccessDenied("not authorized to read topic x"),
            "not authorized to read topic x",
            id="said-already",
        ),
    ],
)
def test_refusals_become_one_line(error: BaseException, line: str) -> None:
    denied = access_denied(error)
    assert denied is not None and str(denied) == line


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(KafkaConnectionError("Unable to bootstrap"), id="unreachable"),
        pytest.param(NodeNotReadyError(), id="not-ready"),
        pytest.param(ssl.SSLError(1, "EOF occurred in violation of protocol"), id="tls-eof"),
        pytest.param(ExceptionGroup("service", [ValueError("bug")]), id="a-bug"),
    ],
)
def test_other_failures_are_not_refusals(error: BaseException) -> None:
    assert access_denied(error) is None


class _DeletingAdmin:
    """Answers DeleteTopics with `code` for the topic, as Kafka does (a refusal is no exception)."""

    def __init__(self, code: int) -> None:
        self.code = code

    async def delete_topics(self, topics: list[str]) -> SimpleNamespace:
        return SimpleNamespace(topic_error_codes=[(topics[0], self.code)])


@pytest.mark.parametrize(
    ("code", "warning"),
    [
        pytest.param(0, None, id="deleted"),
        pytest.param(3, None, id="already-gone"),
        pytest.param(
            29,
            "cannot delete topic knative-broker.ns.b: [Error 29] TopicAuthorizationFailedError:"
            " knative-broker.ns.b",
            id="refused",
        ),
    ],
)
async def test_a_refused_topic_delete_is_logged(
    caplog: pytest.LogCaptureFixture, code: int, warning: str | None
) -> None:
    with caplog.at_level(logging.WARNING, logger="channel.kafka"):
        await delete_topic(cast(Any, _DeletingAdmin(code)), "knative-broker.ns.b")
    assert [record.getMessage() for record in caplog.records] == ([warning] if warning else [])
