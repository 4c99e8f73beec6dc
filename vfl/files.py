"""Private files: owner-only modes, and writing files so that a crash never leaves half of one.

Every store of vfl (jobs, checkpoints, models, the ledger, the lenders' keys,
batch outputs, certificates) keeps its files owner-only and writes them through
these helpers; its JSON files also carry their own checksum (:func:`atomic_write_json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

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




class Confined:
    """A folder that callers name files in: every path stays inside it and none goes through a symbolic link.

    A path is taken relative to the folder (or absolute, if it lies inside it);
    ``..`` is refused. :meth:`open_folder` opens the file's folder one component
    at a time with ``O_NOFOLLOW``, so a link planted on the way cannot lead
    outside; files are then opened relative to that folder's descriptor (see
    :func:`open_at`), so a predictable name cannot be raced either.
    """

    def __init__(self, root: Path, setting: str) -> None:
        self.root = Path(root)
        self.setting = setting  # the config key that names the folder, for messages

    def locate(self, text: str, what: str) -> Path:
        """``text`` as a path relative to the folder; ValueError (with the fix) if it leads outside."""
        path = Path(text)
        if path.is_absolute():
            try:
                path = path.relative_to(self.root)
            except ValueError:
                raise ValueError(f"{what} {text!r} is outside {self.root} ({self.setting}); put the file there, or "
                                 "name it relative to that folder") from None
        if any(part == ".." for part in path.parts) or not path.parts:
            raise ValueError(f"{what} {text!r} leads outside {self.root} ({self.setting}); name a file inside it")
        return Path(*(part for part in path.parts if part != "."))

    def open_folder(self, relative: Path) -> int:
        """A descriptor of the folder ``relative`` (below the root), opened without following any link."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in relative.parts:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd


def open_at(folder: int, name: str, flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` of ``name`` in the folder descriptor ``folder``, never through a symbolic link."""
    return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=folder)

# -- checksummed JSON -----------------------------------------------------------------------------
# Atomic writes do not protect against what happens to a file later (a full disk, a bad sector, a
# careless editor), so every JSON file a service keeps carries the SHA-256 of its content and is
# checked when read. The file stays plain, readable JSON:
#     {"sha256": "<hex digest of the canonical JSON of data>", "data": {...}}


class DamagedFile(Exception):
    """A checksummed file failed its check; the message says how (its reader names the file and the fix)."""


def atomic_write_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode)


def _digest(data: Any) -> str:
    """SHA-256 of one canonical spelling of ``data``, so re-indenting a file keeps it valid."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def atomic_write_json(path: Path, data: Any, mode: int = FILE_MODE) -> None:
    """Write ``data`` as checksummed JSON (see the module docstring), atomically."""
    # Hash what a reader will get back, not what we were given: JSON turns tuples into lists
    # and integer keys into strings, which would otherwise change the digest on the way back.
    plain = json.loads(json.dumps(data, sort_keys=True))
    envelope = {"sha256": _digest(plain), "data": plain}  # checksum first, where a reader sees it
    atomic_write_text(path, json.dumps(envelope, indent=2) + "\n", mode)


def read_json(path: Path) -> Any:
    """The data of a file written by :func:`atomic_write_json`; raises :class:`DamagedFile` with the reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedFile("is not text") from None
    except OSError as exc:
        raise DamagedFile(f"cannot be read ({exc.strerror or exc})") from exc
    try:
        content = json.loads(text)
    except ValueError as exc:
        raise DamagedFile(f"is not valid JSON ({exc}); it was probably cut short") from None
    if isinstance(content, dict) and ("sha256" in content or "data" in content):
        if set(content) != {"sha256", "data"} or content["sha256"] != _digest(content["data"]):
            raise DamagedFile("does not match its SHA-256 checksum; its content has changed since it was written")
        return content["data"]
    # Written before files carried a checksum: still readable, but there is nothing to verify.
    return content


__all__ = ["Confined", "DamagedFile", "atomic_write", "atomic_write_json", "atomic_write_text", "open_at",
           "private_folder", "read_json", "write_private"]
