"""CloudEvents for Kanal: the event value, the HTTP and Kafka bindings and the JSON format.

Kanal does not use the CloudEvents SDK on its hot paths: its HTTP-to-Kafka conversion adds a
`time` attribute and re-serialises JSON data, and a broker must pass events through unchanged.
"""

from channel.events.http import (
    binary_problem,
    carries_event,
    parse_http_request,
    parse_http_response,
    to_http_binary,
)
from channel.events.jsonformat import event_from_json, events_from_batch, to_structured_json
from channel.events.kafka import from_kafka_record, to_kafka_record
from channel.events.model import (
    BATCH_CONTENT_TYPE,
    CE_HTTP_PREFIX,
    CE_KAFKA_PREFIX,
    JSON_CONTENT_TYPE,
    PARTITION_KEY,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    KafkaRecord,
    is_json_media_type,
)
from channel.events.percent import decode_header_value, encode_header_value

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CE_HTTP_PREFIX",
    "CE_KAFKA_PREFIX",
    "JSON_CONTENT_TYPE",
    "PARTITION_KEY",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "KafkaRecord",
    "binary_problem",
    "carries_event",
    "decode_header_value",
    "encode_header_value",
    "event_from_json",
    "events_from_batch",
    "from_kafka_record",
    "is_json_media_type",
    "parse_http_request",
    "parse_http_response",
    "to_http_binary",
    "to_kafka_record",
    "to_structured_json",
]
