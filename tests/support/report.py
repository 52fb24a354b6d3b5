"""A one-line summary per fault test, in a fixed format the README's reliability table is read from."""

from __future__ import annotations


def summary(name: str, **figures: object) -> None:
    print(f"\nRELIABILITY {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
