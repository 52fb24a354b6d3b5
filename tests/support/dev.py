"""`kanal dev` as a user runs it in a terminal: started with an environment, its output read as
it comes, ready once it prints its URLs, and stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time


class KanalDev:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kanal", "dev", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self._lines.extend(iter(self.process.stdout.readline, ""))

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(self._lines)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C to stop." not in self.output:
            assert self.process.poll() is None, self.output
            assert time.monotonic() < deadline, self.output
            time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C, as in its terminal; its exit code once it has stopped."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(60)
        self._reader.join(10)
        return code
