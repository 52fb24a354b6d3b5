"""Apache Kafka with authentication, TLS and ACLs on loopback, as a locked-down Kafka runs.

One KRaft node (`support.apache_kafka.ApacheKafka`) whose clients must authenticate: a
``SASL_SSL`` listener (SCRAM-SHA-512 over TLS) and an ``SSL`` listener that requires a client
certificate, the principal being the certificate's subject (``User:CN=kanal``). No client
listener is PLAINTEXT; the controller listener is TLS with client certificates too, the broker
talking to it as ``User:CN=kafka-broker``. The ``StandardAuthorizer`` denies what no ACL allows
(``allow.everyone.if.no.acl.found=false``); the broker and the test's ``admin`` are super users.

The certificates (a CA, the broker's for 127.0.0.1 and localhost, a client's) are made by the
test with `support.tls.CertificateAuthority`, as PEM, which Kafka reads as keystore and
truststore directly. SCRAM users are created when the storage is formatted (``StorageTool format
--add-scram``), each with a random password. ACLs are created with aiokafka's CreateAcls
request, sent as the admin: aiokafka has the request but no admin method for it, and the jars
`deploy/kafka/pom.xml` resolves do not include the ``kafka-acls`` tool (kafka-tools).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from channel.embedded import free_port
from channel.kafka import client_options
from channel.settings import Settings
from support.apache_kafka import ApacheKafka, KafkaNode
from support.tls import CertificateAuthority, Issued

__all__ = ["Acl", "Operation", "PatternType", "ResourceType", "SecureKafka"]

BROKER_PRINCIPAL = "CN=kafka-broker"
ADMIN = "admin"
SCRAM = "SCRAM-SHA-512"


class ResourceType(enum.IntEnum):
    """Kafka's ACL resource types, by their wire codes."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(enum.IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


_ALLOW = 3
_ANY_HOST = "*"


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding: the user `principal` (``kanal``, ``CN=kanal``) may do `operation` on
    the resources of type `resource` named `name` (PREFIXED: whose names begin with it), from
    any host."""

    principal: str
    resource: ResourceType
    pattern: PatternType
    name: str
    operation: Operation

    def __str__(self) -> str:
        return (
            f"User:{self.principal} {self.operation.name} on {self.resource.name} "
            f"{self.pattern.name} {self.name!r}"
        )


class SecureKafka(ApacheKafka):
    """One node with SASL_SSL (SCRAM-SHA-512) and mutual-TLS listeners and ACLs enforced.

    `users` are the SCRAM users made at format time (the admin besides); `password(user)` gives
    each one's. `settings_sasl(user)` and `settings_mtls()` are Kanal's settings to reach it.
    """

    def __init__(self, users: tuple[str, ...] = ("kanal",), *, workdir: Path | None = None) -> None:
        super().__init__(workdir=workdir)
        self.ssl_port = free_port()
        self._passwords = {user: secrets.token_urlsafe(16) for user in (ADMIN, *users)}
        tls = self.workdir / "tls"
        self.ca = CertificateAuthority(tls)
        self.broker_certificate = self.ca.issue(
            BROKER_PRINCIPAL.removeprefix("CN="), dns=("localhost",), ips=("127.0.0.1",)
        )
        self.client_certificate: Issued = self.ca.issue("kanal")
        # A CA that signed nothing this broker presents: trusting only it must fail.
        self.untrusted_ca = CertificateAuthority(tls / "other", "Another CA")

    @property
    def sasl_bootstrap(self) -> str:
        return self.nodes[0].address

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def password(self, user: str) -> str:
        return self._passwords[user]

    def settings_sasl(self, user: str, password: str | None = None) -> dict[str, str]:
        """Kanal's settings (snake_case names) for SCRAM-SHA-512 over TLS as `user`."""
        return {
            "kafka_bootstrap_servers": self.sasl_bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": SCRAM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.password(user) if password is None else password,
            "kafka_ssl_cafile": str(self.ca.certfile),
        }

    def settings_mtls(self, cafile: Path | None = None) -> dict[str, str]:
        """Kanal's settings for TLS with the client certificate (``User:CN=kanal``)."""
        return {
            "kafka_bootstrap_servers": self.ssl_bootstrap,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": str(cafile or self.ca.certfile),
            "kafka_ssl_certfile": str(self.client_certificate.certfile),
            "kafka_ssl_keyfile": str(self.client_certificate.keyfile),
        }

    def _server_properties(self, node: KafkaNode) -> Path:
        path = super()._server_properties(node)
        properties = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        listeners = {"SASL_SSL": node.port, "SSL": self.ssl_port}
        properties.update(
            {
                "listeners": ",".join(
                    [f"{name}://127.0.0.1:{port}" for name, port in listeners.items()]
                    + [f"CONTROLLER://127.0.0.1:{node.controller_port}"]
                ),
                "advertised.listeners": ",".join(
                    f"{name}://127.0.0.1:{port}" for name, port in listeners.items()
                ),
                "listener.security.protocol.map": "CONTROLLER:SSL,SSL:SSL,SASL_SSL:SASL_SSL",
                "inter.broker.listener.name": "SSL",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.broker_certificate.pem),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.ca.certfile),
                "listener.name.ssl.ssl.client.auth": "required",
                "listener.name.controller.ssl.client.auth": "required",
                "sasl.enabled.mechanisms": SCRAM,
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": f"User:{BROKER_PRINCIPAL};User:{ADMIN}",
                "allow.everyone.if.no.acl.found": "false",
            }
        )
        path.write_text("".join(f"{key}={value}\n" for key, value in sorted(properties.items())))
        return path

    def _java(self, node: KafkaNode, *args: str) -> list[str]:
        if args[:2] == ("kafka.tools.StorageTool", "format"):
            # The SCRAM users, stored in the cluster's first metadata.
            for user, password in self._passwords.items():
                args = (*args, "--add-scram", f"{SCRAM}=[name={user},password={password}]")
        return super()._java(node, *args)

    def _admin_settings(self) -> Settings:
        return Settings(**self.settings_sasl(ADMIN))  # type: ignore[arg-type]

    async def _admin_client(self) -> AIOKafkaClient:
        client = AIOKafkaClient(**client_options(self._admin_settings()), request_timeout_ms=5000)
        try:
            async with asyncio.timeout(10):
                await client.bootstrap()
        except BaseException:
            await client.close()
            raise
        return client

    async def _brokers(self, node: KafkaNode) -> set[int]:
        client = await self._admin_client()
        try:
            return {broker.nodeId for broker in client.cluster.brokers()}
        finally:
            await client.close()

    async def add_acls(self, acls: list[Acl]) -> None:
        """Create `acls` (ALLOW, any host), as the admin."""
        client = await self._admin_client()
        try:
            node = client.get_random_node()
            for acl in acls:
                request = CreateAclsRequest(
                    acl.resource,
                    acl.name,
                    acl.pattern,
                    f"User:{acl.principal}",
                    _ANY_HOST,
                    acl.operation,
                    _ALLOW,
                )
                response = await client.send(node, request)
                for code, message in response.creation_responses:
                    if code:
                        raise for_code(code)(f"{acl}: {message}")
        finally:
            await client.close()
