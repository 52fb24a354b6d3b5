#!/bin/sh
# The walk-through's three events, in binary mode. Each answers 202 Accepted.
# hello-display prints say-hello and say-hello-goodbye; goodbye-display prints
# say-goodbye and say-hello-goodbye.
URL=${KANAL_BROKER_URL:-http://127.0.0.1:8080/event-example/default}

curl -s -o /dev/null -w "say-hello: %{http_code}\n" "$URL" -X POST \
  -H "Ce-Id: say-hello" -H "Ce-Specversion: 1.0" -H "Ce-Type: greeting" \
  -H "Ce-Source: not-sendoff" -H "Content-Type: application/json" \
  -d '{"msg":"Hello Knative!"}'

curl -s -o /dev/null -w "say-goodbye: %{http_code}\n" "$URL" -X POST \
  -H "Ce-Id: say-goodbye" -H "Ce-Specversion: 1.0" -H "Ce-Type: not-greeting" \
  -H "Ce-Source: sendoff" -H "Content-Type: application/json" \
  -d '{"msg":"Goodbye Knative!"}'

curl -s -o /dev/null -w "say-hello-goodbye: %{http_code}\n" "$URL" -X POST \
  -H "Ce-Id: say-hello-goodbye" -H "Ce-Specversion: 1.0" -H "Ce-Type: greeting" \
  -H "Ce-Source: sendoff" -H "Content-Type: application/json" \
  -d '{"msg":"Hello Knative! Goodbye Knative!"}'
