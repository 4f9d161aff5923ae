"""A per-run lock, so two launches of one sweep into one results dir never train a run twice.

``<run_dir>/run.lock`` is created exclusively (``O_CREAT | O_EXCL``) and holds the host
and pid of the process that owns the run.  A second launcher that finds it skips the run
and says who has it; it never resumes from a checkpoint another live process is writing.

**Stale locks.**  A lock whose pid is dead *on this host* (a SIGKILLed launch) is taken
over; the takeover is serialised by ``flock`` on the run dir, so two launchers that find
the same stale lock cannot both take it.  A lock from another host cannot be checked from
here: the message names it, and deleting it is the user's call.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from selbench.core.errors import WriteError
from selbench.core.io import file_mode

LOCK = "run.lock"


class RunBusy(Exception):
    """The run is owned by another live process."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
        super().__init__(f"in progress in another launch (host {holder.get('host')}, pid {holder.get('pid')}, "
                         f"since {since}); if none is running, delete {path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written by a launcher that is creating it right now, or damaged


class RunLock:
    """``with RunLock(run_dir):`` … the run is this process's until the block ends."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(self.path.parent, e) from None
        for _ in range(3):
            if self._create():
                return self
            holder = _read(self.path)
            if holder is None:
                continue  # released between our attempt and the read: try again
            if not self._stale(holder) or not self._take_over(holder):
                raise RunBusy(self.path, holder or {"host": "?", "pid": "?"})
            return self
        raise RunBusy(self.path, _read(self.path) or {})

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode())
        except FileExistsError:
            return False
        except OSError as e:
            raise WriteError(self.path, e) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.me))
        return True

    def _stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == self.me["host"] and isinstance(pid, int) and pid != os.getpid() \
            and not _alive(pid)

    def _take_over(self, holder: dict) -> bool:
        """Replace a dead process's lock, unless another launcher got there first."""
        fd = os.open(self.path.parent, os.O_RDONLY)  # flock on the run dir: no guard file left behind
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _read(self.path) != holder:  # someone else took it over meanwhile
                return False
            self.path.unlink(missing_ok=True)
            return self._create()
        finally:
            os.close(fd)  # releases the flock

    def __exit__(self, *exc) -> None:
        if _read(self.path) == self.me:
            try:
                self.path.unlink()
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise WriteError(self.path, e) from None
