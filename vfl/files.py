"""Private files: owner-only modes, and writing files so that a crash never leaves half of one.

Every store of vfl (jobs, checkpoints, models, the ledger, the lenders' keys,
batch outputs, certificates) keeps its files owner-only and writes them through
these helpers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600  # owner only: records, models, checkpoints and keys
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """``path``, made if missing and owner-only (it may predate this rule)."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    os.chmod(path, FOLDER_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (a private key, a token) readable by its owner only, 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, FILE_MODE)  # O_CREAT's mode does not apply to a file that already existed


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE, *, durable: bool = False) -> None:
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
