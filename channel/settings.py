"""Kanal's settings: one pydantic-settings model, read once at startup by each component's entry point.

Every setting has one name everywhere: the environment variable is ``KANAL_<NAME>``, the CLI flag
is ``--<name-with-dashes>`` and the Helm value is the camel-cased name. Settings are validated
when they are read, so a component with a bad setting refuses to start with a clear message
instead of failing later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channel.destinations import DEFAULT_DENY, parse_rules

__all__ = ["Settings"]


class Settings(BaseSettings):
    """All of Kanal's settings with their defaults."""

    model_config = SettingsConfigDict(env_prefix="KANAL_", extra="ignore", frozen=True)

    # Kafka connection
    kafka_bootstrap_servers: str = Field(
        default="", description="Kafka bootstrap servers, comma-separated host:port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_idempotence: bool = Field(
        default=True,
        description="Idempotent producer; off for brokers without InitProducerId (the embedded one)",
    )
    kafka_topic_partitions: int = Field(default=10, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    kafka_topic_prefix: str = Field(default="knative-broker", min_length=1)
    kafka_channel_topic_prefix: str = Field(default="knative-channel", min_length=1)
    kafka_resources_topic: str = "kanal.resources"
    kafka_attempts_topic: str = Field(
        default="kanal.attempts",
        description="Compacted topic of delivery attempts of events being retried (survives rebalances)",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        description="How long a fetch waits for new records; Kafka answers as soon as one arrives, the "
        "embedded broker only when this expires (kanal dev sets 20)",
    )
    kafka_event_fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=1,
        description="The same for the dispatcher's reads of Broker and Channel topics, where it bounds "
        "delivery latency on the embedded broker (kanal dev sets 10); unset: kafka_fetch_max_wait_ms",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="Consumer-group session timeout: how soon a dead dispatcher's partitions move "
        "(the embedded broker also waits half of it before a group forms; kanal dev sets 4000)",
    )
    kafka_ticks_topic: str = Field(
        default="kanal.ticks", description="Compacted topic of the last tick sent per PingSource"
    )
    ping_catch_up: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a missed PingSource tick may be late and still be sent (older ones are skipped)",
    )
    kafka_produce_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a write may wait for Kafka before 503"
    )

    # Network
    host: str = Field(default="127.0.0.1", description="Address the servers bind to")
    ingress_port: int = Field(default=8080, ge=0, le=65535)
    controller_port: int = Field(default=8081, ge=0, le=65535)
    dispatcher_port: int = Field(default=8082, ge=0, le=65535)
    ingress_metrics_port: int = Field(
        default=8083,
        ge=0,
        le=65535,
        description="Port of the ingress's /metrics, apart from the event traffic on ingress_port",
    )
    ingress_url: str = Field(
        default="",
        description="Base URL published in Broker addresses; default http://<host>:<ingress_port>",
    )
    controller_url: str = Field(
        default="", description="The controller's admin API, for the CLI; default from host/port"
    )
    service_url_template: str = Field(
        default="http://{name}.{namespace}.svc.cluster.local/",
        description="How a subscriber ref of kind Service resolves to a URL",
    )

    # The controller's admin API (docs/security.md, The control API token)
    controller_host: str | None = Field(
        default=None,
        description="Address the controller's admin API binds to; default KANAL_HOST (kanal dev: 127.0.0.1)",
    )
    controller_token_file: str | None = Field(
        default=None,
        description="File of the bearer tokens the admin API accepts, one a line (the CLI sends the "
        "first); read again when it changes",
    )
    controller_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the CLI sends to the controller (which accepts it too)",
    )
    controller_open_reads: bool = Field(
        default=False, description="Let the admin API's GET calls in without a token"
    )

    # Ingress
    ingress_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    ingress_max_in_flight: int = Field(default=4096, ge=1)
    ingress_max_connections: int = Field(
        default=10_000, ge=1, description="Connections open at once; one more is answered 503 and closed"
    )
    ingress_head_timeout: float = Field(
        default=10.0, gt=0, description="Seconds from a request's first byte to the end of its head, else 408"
    )
    ingress_body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds more for the whole request (else 408), and that a client may take none of "
        "its answers (else it is dropped)",
    )
    ingress_auth: Literal["none", "tokens", "jwt"] = Field(
        default="none", description="Bearer-token check on the ingress: none, tokens (a file), jwt"
    )
    ingress_auth_tokens_file: str | None = Field(
        default=None, description="YAML/JSON file mapping bearer tokens to the destinations they may post to"
    )
    ingress_auth_query_token: bool = Field(
        default=False,
        description="Also take the bearer token from the access_token query parameter (the "
        "CloudEvents webhook spec allows it, but URLs end up in access logs and proxies' logs)",
    )
    ingress_jwt_issuer: str | None = None
    ingress_jwt_jwks_url: str | None = Field(
        default=None,
        description="JWKS: an https:// URL (http:// only on loopback; redirects are not followed) "
        "or a file path",
    )
    ingress_jwt_jwks_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often the JWKS is read again (and at most every 30 s when a token names "
        "a key it does not hold), so a rotated key needs no restart",
    )
    ingress_webhook_allowed_origins: str = Field(
        default="",
        description="Origins the webhook OPTIONS handshake approves (WebHook-Allowed-Origin), "
        "comma-separated; * for any; empty: none is approved",
    )
    ingress_tls_certfile: str | None = Field(default=None, description="Serve the ingress over HTTPS")
    ingress_tls_keyfile: str | None = None
    ingress_metrics_event_types: str = Field(
        default="",
        description="Event types counted under their own name in the ingress's metrics, "
        "comma-separated; every other type is counted as 'other' (empty: the first "
        "ingress_metrics_max_event_types types seen)",
    )
    ingress_metrics_max_event_types: int = Field(
        default=50,
        ge=0,
        description="Without ingress_metrics_event_types: how many event types (the first seen by "
        "each ingress process) get a series of their own; later ones are counted as 'other'",
    )
    ingress_event_types_max: int = Field(
        default=1000,
        ge=0,
        le=100_000,
        description="EventTypes recorded per Broker or Channel (distinct type, source, dataschema and "
        "datacontenttype, over all ingress replicas); events of further kinds are delivered but not "
        "recorded (0: record none)",
    )
    ingress_deduplication_max_ids: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Event ids each ingress process holds for the Brokers and Channels with "
        "kanal.dev/deduplication-window, over all of them (about 100 bytes each); when full the "
        "oldest go first and their window is effectively shorter",
    )
    ingress_deduplication_max_staleness: float = Field(
        default=0.25,
        ge=0.0,
        le=10.0,
        description="Seconds by which an ingress replica's view of the other replicas' writes may "
        "lag when it decides whether an event is a duplicate: a copy stored elsewhere at least this "
        "long before is always found; while events come the view is refreshed twice as often, so "
        "no request waits. 0: every new event waits for a Kafka round trip that makes the view "
        "current, and a copy acknowledged anywhere before it arrived is found",
    )

    # Dispatcher
    dispatcher_max_in_flight: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Concurrent deliveries per Trigger or Subscription, the ceiling of its adaptive "
        "limit (annotation kanal.dev/max-in-flight)",
    )
    dispatcher_adaptive_concurrency: bool = Field(
        default=True,
        description="Each subscriber's in-flight limit follows its answers: up while they are quick and "
        "fine, down on 429, 503, timeouts and rising latency (annotation kanal.dev/adaptive-concurrency)",
    )
    dispatcher_rate_limit: float = Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        description="Delivery attempts per second to each subscriber, 0 for no limit (annotation "
        "kanal.dev/rate-limit)",
    )
    dispatcher_rate_limit_burst: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Attempts a rate-limited subscriber may get at once; 0: a tenth of a second's "
        "worth, at least 1 (annotation kanal.dev/rate-limit-burst)",
    )
    dispatcher_connections_per_host: int = Field(
        default=128,
        ge=1,
        description="Open connections per subscriber host, shared by all Triggers delivering there",
    )
    dispatcher_lane_buffer: int = Field(
        default=1024,
        ge=1,
        description="Events queued per Trigger before a slow Trigger is read on its own",
    )
    dispatcher_commit_interval: float = Field(default=1.0, gt=0)
    dispatcher_default_timeout: float = Field(default=30.0, gt=0)
    dispatcher_max_hops: int = Field(default=255, ge=1)
    delivery_deny: str = Field(
        default=DEFAULT_DENY,
        description="Destinations that deliveries, replies, dead letters and PingSource events may not "
        "reach: comma-separated CIDR ranges, addresses and host names, each optionally with :port "
        "(Kanal's own admin ports on this host are denied besides)",
    )

    # Tracing (docs/tracing.md): OpenTelemetry spans of the ingress and the dispatcher, off while no
    # endpoint is set.
    tracing_endpoint: str = Field(
        default="",
        description="OTLP/HTTP endpoint the ingress and the dispatcher send their spans to "
        "(http://collector:4318; /v1/traces is added to a URL without a path); empty: no spans",
    )
    tracing_sampling_ratio: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of the traces the ingress starts (for events sent without a traceparent) "
        "that are recorded; an event sent with one follows its sender's sampling decision",
    )
    tracing_service_prefix: str = Field(
        default="kanal",
        min_length=1,
        description="The spans' service.name is this, a dash and the component: kanal-ingress, "
        "kanal-dispatcher",
    )
    tracing_export_interval: float = Field(
        default=5.0, gt=0, le=300, description="Seconds between the batches of spans sent to the endpoint"
    )
    tracing_max_queue_size: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Finished spans waiting to be sent, at most; more are dropped (a warning once a "
        "minute says so), so a collector that is down cannot grow the memory",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text: one line per record; json: one JSON object per line (for log collectors).
    log_format: Literal["text", "json"] = "text"

    def metrics_event_types(self) -> frozenset[str] | None:
        """The configured event types with a series of their own, or None when none are."""
        types = frozenset(t.strip() for t in self.ingress_metrics_event_types.split(",") if t.strip())
        return types or None

    @field_validator("tracing_endpoint")
    @classmethod
    def _tracing_endpoint(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL (OTLP over HTTP), or empty for no tracing")
        return value

    @field_validator("delivery_deny")
    @classmethod
    def _deny_rules(cls, value: str) -> str:
        parse_rules(value)  # every entry that is not a rule is named
        return value

    def group_options(self) -> dict[str, int]:
        """Session and heartbeat settings of Kanal's consumer groups."""
        session = self.kafka_session_timeout_ms
        return {"session_timeout_ms": session, "heartbeat_interval_ms": max(300, min(3000, session // 3))}

    def event_fetch_max_wait_ms(self) -> int:
        """The fetch wait of the dispatcher's event reads."""
        if self.kafka_event_fetch_max_wait_ms is not None:
            return self.kafka_event_fetch_max_wait_ms
        return self.kafka_fetch_max_wait_ms

    def bootstrap(self) -> str:
        """The bootstrap servers, or a clear error if none are configured."""
        if not self.kafka_bootstrap_servers:
            raise ValueError(
                "KANAL_KAFKA_BOOTSTRAP_SERVERS is not set (use `kanal dev` for an embedded broker)"
            )
        return self.kafka_bootstrap_servers

    def public_ingress_url(self) -> str:
        if self.ingress_url:
            return self.ingress_url.rstrip("/")
        return f"http://{self.host}:{self.ingress_port}"

    def controller_bind_host(self) -> str:
        """The address the admin API binds to."""
        return self.host if self.controller_host is None else self.controller_host

    def public_controller_url(self) -> str:
        if self.controller_url:
            return self.controller_url.rstrip("/")
        return f"http://{self.controller_bind_host()}:{self.controller_port}"
