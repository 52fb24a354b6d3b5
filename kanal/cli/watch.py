"""`kanal get KIND -w`: the table once, then one line per change, as `kubectl get -w` prints.

The controller's admin API has no watch call, so the list is asked for every `INTERVAL` seconds
and compared with the last one (`changed_rows`, pure): a resource that appears or whose row
differs (status, reason, lag, ...; not its age, which ticks by itself) is printed again, one
that goes away is printed once more with its last row. Only the current rows are kept (one per
resource), and a poll that fails is said once on stderr and tried again at the next. It runs
until Ctrl-C (or `--watch-limit` lines).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final, TextIO

from kanal.cli.client import ClientError
from kanal.cli.tables import line, widths_of

__all__ = ["INTERVAL", "changed_rows", "watch"]

INTERVAL: Final = 1.0

Rows = Mapping[str, list[str]]
Poll = Callable[[], tuple[list[str], Rows]]


def changed_rows(before: Rows, after: Rows, ignore: int | None = None) -> list[list[str]]:
    """The rows to print going from `before` to `after`: new or changed ones in `after`'s order,
    then the last row of each one that is gone. The cell at `ignore` (AGE, which ticks by itself)
    is not a change."""

    def differs(old: list[str] | None, new: list[str]) -> bool:
        if old is None or ignore is None or len(old) != len(new):
            return old != new
        return old[:ignore] != new[:ignore] or old[ignore + 1 :] != new[ignore + 1 :]

    changed = [row for key, row in after.items() if differs(before.get(key), row)]
    return changed + [row for key, row in before.items() if key not in after]


def watch(
    poll: Poll,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    interval: float = INTERVAL,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the table from the first `poll()`, then a line per change until interrupted or
    `limit` change lines were printed."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A shell starts a background job with SIGINT ignored, and Python then leaves it so:
        # without this, `kill -INT` (what Ctrl-C sends) would never stop the watch.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    headers, rows = poll()
    age = headers.index("AGE") if "AGE" in headers else None
    widths = widths_of(headers, rows.values())
    print(line(headers, widths), file=out)
    for row in rows.values():
        print(line(row, widths), file=out)
    out.flush()
    printed = 0
    failing = False
    try:
        while limit is None or printed < limit:
            sleep(interval)
            try:
                _, current = poll()
            except ClientError as exc:
                if not failing:
                    print(f"kanal get: {exc} (trying again every {interval:g}s)", file=err, flush=True)
                failing = True
                continue
            failing = False
            for row in changed_rows(rows, current, age)[: None if limit is None else limit - printed]:
                print(line(row, widths), file=out, flush=True)
                printed += 1
            rows = current
    except KeyboardInterrupt:
        pass
    return 0
