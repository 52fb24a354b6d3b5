"""The `kanal` command: the one place that depends on every part of Kanal.

`channel` is the shared core; `ingress` and `dispatcher` build on it. This package sits above all
three: the CLI (`kanal.cli`), the composition of each component's service (`kanal.components`)
and `kanal dev`'s process runner (`kanal.dev`). Nothing in `channel`, `ingress` or `dispatcher`
imports it (tests/unit/test_import_graph.py holds that).
"""
