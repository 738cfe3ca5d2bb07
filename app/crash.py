"""Deterministic crash points for the crash tests.

``crashpoint("after_batch_upsert")`` kills the process with SIGKILL when the environment says
``DOCENT_CRASH_AT=after_batch_upsert`` (or ``after_batch_upsert:3`` for the third time it is
reached). Without that variable it does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter[str] = Counter()


def crashpoint(name: str) -> None:
    target = os.environ.get("DOCENT_CRASH_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    if wanted != name:
        return
    _seen[name] += 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
