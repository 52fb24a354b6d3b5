"""What a running Kanal holds, as the CLI lists it: for checking that a fault or a refused apply
left the stored resources exactly as they were."""

from __future__ import annotations

import asyncio
import json

from support.cluster import KanalCluster

# Every kind `kanal get` lists (sources are PingSources, listed under their own name).
KINDS = ("brokers", "triggers", "channels", "subscriptions", "pingsources")

Resource = tuple[str, str, str, str]  # kind, namespace, name, uid


async def inventory(cluster: KanalCluster) -> set[Resource]:
    """Every resource in every namespace, from `kanal get KIND -A -o json`."""
    found: set[Resource] = set()
    for kind in KINDS:
        result = await asyncio.to_thread(cluster.kanal, "get", kind, "-A", "-o", "json")
        assert result.returncode == 0, f"kanal get {kind} -A: {result.stderr}"
        listed = json.loads(result.stdout or "{}")
        # One resource is printed bare, more as a List.
        docs = listed.get("items", []) if listed.get("kind") == "List" else [listed] if listed else []
        for doc in docs:
            meta = doc.get("metadata") or {}
            found.add(
                (
                    str(doc.get("kind")),
                    str(meta.get("namespace")),
                    str(meta.get("name")),
                    str(meta.get("uid")),
                )
            )
    return found
