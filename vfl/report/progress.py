"""A live progress line for long runs: stage, epoch bar, loss.

On a terminal the line is redrawn in place; otherwise (logs, CI) one line is
written per change, so nothing is lost in a file.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

BAR_WIDTH = 24


def render(stage: str, epoch: int, max_epochs: int | None, loss: float | None = None,
           validation_loss: float | None = None, prefix: str = "") -> str:
    parts = [prefix + stage] if prefix else [stage]
    if max_epochs:
        done = min(BAR_WIDTH, round(BAR_WIDTH * epoch / max_epochs))
        parts.append(f"[{'#' * done}{'.' * (BAR_WIDTH - done)}] epoch {epoch}/{max_epochs}")
    if loss is not None:
        parts.append(f"loss {loss:.6f}")
    if validation_loss is not None:
        parts.append(f"validation {validation_loss:.6f}")
    return "  ".join(parts)


def waiting_text(waiting: dict[str, Any]) -> str:
    """One entry of a job status's ``waiting_for`` in words: 'waiting for party-a (unreachable since 12:03:11;
    the job fails at 12:05:11 unless it comes back)' (local times)."""
    since = time.strftime("%H:%M:%S", time.localtime(waiting["since"]))
    fails = time.strftime("%H:%M:%S", time.localtime(waiting["fails_at"]))
    return (f"waiting for {waiting['peer']} ({waiting.get('state') or 'unreachable'} since {since}; "
            f"the job fails at {fails} unless it comes back)")


def timing_text(entry: dict[str, Any]) -> str:
    """One entry of a job status's ``party_timings`` in words.

    "psi 3.7 s, training 16.8 s (computing 6.3 s, waiting 10.5 s), evaluating 1.1 s", or the
    reason it is not available. Stages that took no time are left out.
    """
    if not entry.get("available"):
        return str(entry.get("reason") or "not available")
    parts = []
    training = entry.get("training") or {}
    for stage, seconds in (entry.get("stages") or {}).items():
        if not seconds:
            continue
        text = f"{stage} {float(seconds):.1f} s"
        if stage == "training" and training:
            text += f" (computing {float(training['compute']):.1f} s, waiting {float(training['waiting']):.1f} s)"
        parts.append(text)
    return ", ".join(parts) or "no stage took measurable time"


#: How often a step that is still running says so: every second in place on a terminal, else a line every 10 s.
TICK_LIVE, TICK_LOG = 1.0, 10.0


class ProgressLine:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: str | None = None
        self._lock = threading.RLock()
        self._running: tuple[str, float] | None = None  # the step under way and when it began (stage, epoch)
        self._wrote = time.monotonic()
        self._ticker: threading.Thread | None = None

    def show(self, line: str, *, final: bool = False) -> None:
        with self._lock:
            if line == self._last and not final:
                return
            if self.live:
                self.stream.write("\r\033[K" + line + ("\n" if final else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
            self._last = None if final else line
            self._wrote = time.monotonic()

    def close(self) -> None:
        """End a line left open on a terminal (a run that stopped before its last epoch); stop saying "still"."""
        with self._lock:
            self._running = None
            if self.live and self._last is not None:
                self.stream.write("\n")
                self.stream.flush()
                self._last = None

    def stage(self, text: str) -> None:
        """A step begins ("aligning: ..."): its own line at once, then "still aligning (12s)" while it runs."""
        with self._lock:
            self.close()
            self.stream.write(text + "\n")
            self.stream.flush()
            self._wrote = time.monotonic()
            self._keep_saying(text.split(":", 1)[0])

    def _keep_saying(self, what: str) -> None:
        self._running = (what, time.monotonic())
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="vfl-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        interval = TICK_LIVE if self.live else TICK_LOG
        while True:
            time.sleep(min(interval, 1.0))
            with self._lock:
                if self._running is None or time.monotonic() - self._wrote < interval:
                    continue
                what, began = self._running
                self.show(f"  still {what} ({time.monotonic() - began:.0f}s)")

    def epoch(self, epoch: int, max_epochs: int, loss: float | None, validation_loss: float | None) -> None:
        """The shape ``vfl.local.simulate`` calls its progress hook with (epoch counted from 0)."""
        last = epoch + 1 >= max_epochs
        self.show(render("training", epoch + 1, max_epochs, loss, validation_loss), final=last)
        with self._lock:
            if self._running is not None and not last:  # only a run that announced its steps hears "still"
                self._running = (f"training epoch {epoch + 2}/{max_epochs}", time.monotonic())

    def job(self, status: dict[str, Any]) -> None:
        """One job status from the REST API."""
        losses = status.get("loss_history") or []
        validation = status.get("validation_loss_history") or []
        epoch, max_epochs = status.get("epoch", 0), status.get("max_epochs")
        stage = f"{status['state']} ({status.get('stage')})"
        if status["state"] == "succeeded":
            # A job that converged early is complete: a full bar, and why it stopped.
            max_epochs = epoch or max_epochs
            stage = f"succeeded ({status.get('stop_reason') or 'done'})"
        line = render(stage, epoch, max_epochs, losses[-1] if losses else None,
                      validation[-1] if validation else None, prefix=f"{status['job_id']}: ")
        activity = status.get("activity")
        if activity and status["state"] not in ("succeeded", "failed", "cancelled", "damaged"):
            line += f"  {activity}"
        for waiting in status.get("waiting_for") or []:
            line += f"  {waiting_text(waiting)}"
        self.show(line, final=status["state"] in ("succeeded", "failed", "cancelled", "damaged"))
