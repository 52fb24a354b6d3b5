"""Kanal's shared core: settings, errors, the CloudEvents codec, Kafka naming, resources,
filters, the control plane and the CLI. `ingress` and `dispatcher` build on this package and
never import each other."""
