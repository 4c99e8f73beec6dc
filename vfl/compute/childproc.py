"""Child processes that end with the process that started them.

``vfl demo`` and the tests start ``vfl serve`` processes. If the starter is
killed outright (SIGKILL: no ``finally`` runs), Linux can still tell each child:
``prctl(PR_SET_PDEATHSIG, SIGTERM)`` asks the kernel to send the child SIGTERM
when its parent dies, and a service stops cleanly on SIGTERM (its crypto
workers watch it in turn, see :mod:`vfl.compute.pool`). Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)


def ends_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that ties the child's life to ours (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    return lambda: _die_with_parent(parent)
