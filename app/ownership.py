"""Who owns the data directory.

A Qdrant Edge shard can be open in one process only. The process that opens it (a server, or
a CLI command when no server runs) holds an exclusive lock on ``<data_dir>/owner.lock``; a
server also writes its URL to ``<data_dir>/server.json`` so other commands can use its API.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.errors import Busy


@dataclass
class Owner:
    pid: int
    url: str | None
    token: str | None = None
    """The server's key for command-line tools on this machine (admin rights; only readable
    by whoever can read the data directory's server.json, which is mode 0600)."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._file: IO[str] | None = None

    @property
    def _lock_path(self) -> Path:
        return self.data_dir / "owner.lock"

    @property
    def _server_path(self) -> Path:
        return self.data_dir / "server.json"

    def try_acquire(self) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        f = self._lock_path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return True

    def acquire(self) -> None:
        if not self.try_acquire():
            owner = self.owner()
            who = f"process {owner.pid}" if owner else "another process"
            raise Busy(
                f"The data directory {self.data_dir} is in use by {who}. Stop it first, or "
                "point DOCENT_DATA_DIR somewhere else."
            )

    def advertise(self, url: str, token: str | None = None) -> None:
        tmp = self._server_path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"pid": os.getpid(), "url": url, "token": token}))
        tmp.replace(self._server_path)

    def owner(self) -> Owner | None:
        """The process holding the lock, with its URL if it is a server."""
        try:
            pid = int(self._lock_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        url = token = None
        try:
            info = json.loads(self._server_path.read_text())
            if info.get("pid") == pid:
                url = str(info["url"])
                token = info.get("token")
        except (OSError, ValueError, KeyError):
            pass
        return Owner(pid, url, token) if pid else None

    def release(self) -> None:
        if self._file is None:
            return
        try:
            info = json.loads(self._server_path.read_text())
            if info.get("pid") == os.getpid():
                self._server_path.unlink()
        except (OSError, ValueError):
            pass
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
