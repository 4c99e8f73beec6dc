"""Writing files so that a crash never leaves half of one: the one helper every store uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = False) -> None:
    """Write ``data`` to ``path``: readers see the old file or the new one, never a mix.

    The file is written beside its target (0600 from the start, then ``mode``),
    flushed to disk and renamed over it. ``durable`` also syncs the folder, so
    the rename itself survives a power cut (for append-only records such as the
    ledger). The folder must exist.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        if durable:
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_write"]
