"""Kanal's shared core: settings, errors, the CloudEvents codec, Kafka naming, resources,
filters and the control plane. `ingress` and `dispatcher` build on this package and never import
each other; the CLI (`kanal`) sits above all three, and this package imports none of them."""
