"""The composition of Kanal's three components: `kanal controller`, `kanal ingress` and `kanal
dispatcher`, as the Helm chart and `kanal dev` run them.

This is where the concrete service classes are picked (the controller's from `channel.control`,
the ingress's and the dispatcher's from their packages), logging is configured and the process
runs one service in the foreground until SIGTERM. It lives above `channel`, `ingress` and
`dispatcher`, so the shared core never imports the components built on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from channel.runner import Service
    from channel.settings import Settings
    from channel.tracing import Tracing

__all__ = ["COMPONENTS", "run_component"]

COMPONENTS: Final = {
    "controller": "run the controller (resources, topics, status, admin API)",
    "ingress": "run the HTTP ingress",
    "dispatcher": "run the dispatcher",
}


def run_component(name: str, settings: Settings) -> int:
    """Run the component `name` in the foreground until it is told to stop; its exit status."""
    # Imported here, not with the CLI: every `kanal` command would pay for all three (and a
    # component's process would carry the other two's metric families).
    from channel.control.token_files import controller_tokens
    from channel.kafka import access_denied, check_connection
    from channel.proxy import Proxies
    from channel.runner import configure_logging, run_service

    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.bootstrap()
        Proxies.from_environment(os.environ)  # every component may send through it
    except ValueError as exc:
        raise SystemExit(f"kanal {name}: {exc}") from None
    factory: Callable[[], Service]
    scope = contextlib.ExitStack()  # what the component needs for as long as it runs
    if name == "controller":
        try:
            tokens = scope.enter_context(controller_tokens(settings, os.environ))
        except ValueError as exc:
            raise SystemExit(f"kanal controller: {exc}") from None
        from channel.control.service import ControllerService

        factory = partial(ControllerService, settings, tokens)
    elif name == "ingress":
        from ingress.service import IngressService

        factory = partial(IngressService, settings, _tracing(scope, settings, name))
    elif name == "dispatcher":
        from dispatcher.service import DispatcherService

        factory = partial(DispatcherService, settings, _tracing(scope, settings, name))
    else:
        raise ValueError(f"no component {name!r} (one of {', '.join(COMPONENTS)})")
    with scope:
        try:
            return run_service(factory, setup=partial(check_connection, settings))
        except Exception as exc:
            # Kafka refused Kanal (credentials, TLS, an ACL): configuration, said in one line.
            if (denied := access_denied(exc)) is None:
                raise
            logging.getLogger(__name__).error("kanal %s stopped: %s", name, denied)
            return 1


def _tracing(scope: contextlib.ExitStack, settings: Settings, name: str) -> Tracing | None:
    """The component's tracer when KANAL_TRACING_ENDPOINT is set, its queued spans sent when the
    component has stopped (after SIGTERM's drain); None, and OpenTelemetry never imported, if not."""
    if not settings.tracing_endpoint:
        return None
    from channel.tracing import Tracing

    tracing = Tracing(settings, name)
    scope.callback(tracing.shutdown)
    logging.getLogger(__name__).info(
        "tracing to %s, sampling %g of new traces", settings.tracing_endpoint, settings.tracing_sampling_ratio
    )
    return tracing
