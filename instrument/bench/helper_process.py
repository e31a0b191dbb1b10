"""A benchmark's helper process (a receiver, the stall probe): started, awaited, stopped, its JSON read back.

The helper is `python -m MODULE ... OUT.json`: it writes one JSON line to OUT.json once it is ready,
and, on SIGTERM, replaces it with its result. It dies with the benchmark (PR_SET_PDEATHSIG), so a
killed bench leaks no process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from instrument.bench.jack_server import _die_with_parent


class HelperProcess:
    """`python -m module *args` writing `out`; `what` names it in errors."""

    def __init__(self, module: str, args: list[str], out: Path, what: str) -> None:
        self.out, self.what = out, what
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the helper has written its ready line."""
        deadline = time.monotonic() + timeout
        while not (self.out.exists() and self.out.read_text().endswith("\n")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = self.proc.stderr.read() if self.proc.poll() is not None else "timeout"
                raise RuntimeError(f"the {self.what} did not start: {why}")
            time.sleep(0.02)

    def finish(self, timeout: float = 30.0) -> dict:
        """Stop it (SIGTERM) and return what it wrote."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        """Make sure it is gone (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
