#!/usr/bin/env python3
"""A stand-in for an inference server: prints a heartbeat a second.

The scheduler starts it after admission and stops it with SIGTERM; it then
"drains" (finishes the current beat) and exits 0. WARDEN_DEPLOYMENT_ID and
WARDEN_MODEL_DIGEST, set by the scheduler, are only printed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType


def main() -> int:
    stopping = False

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    deployment = os.environ.get("WARDEN_DEPLOYMENT_ID", "?")
    model = os.environ.get("WARDEN_MODEL_DIGEST", "?")
    print(f"workload: serving model {model} as deployment {deployment}", flush=True)
    beat = 0
    while not stopping:
        beat += 1
        print(f"workload: heartbeat {beat}", flush=True)
        time.sleep(1)
    print(f"workload: drained after {beat} heartbeats; exiting", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
