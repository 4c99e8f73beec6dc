"""A service that stops while a message is still being handled leaks no semaphore.

The handler thread may ask for the pool again after the stop has shut the pools down;
a pool made then would never be shut down, and multiprocessing's resource tracker
would warn of "leaked semaphore objects" at the SIGTERM that ends the process
(seen once under CI load at party B).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import os, signal, threading, time
    from vfl.compute.pool import get_pool, shutdown_pools

    def handle_a_message():
        get_pool(2).submit(time.sleep, 0.1).result()
        time.sleep(0.8)  # still handling the message when the service stops ...
        try:
            get_pool(2).submit(time.sleep, 5).result()  # ... and it asks for the pool again
        except Exception as exc:
            print("refused:", type(exc).__name__, exc, flush=True)

    if __name__ == "__main__":
        threading.Thread(target=handle_a_message).start()
        time.sleep(0.5)
        shutdown_pools(wait=True)  # the service's stop
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn ends a SIGTERM'd service so: no atexit code runs
''')


def test_a_handler_that_asks_for_the_pool_after_the_stop_is_refused_and_nothing_leaks(tmp_path: Path):
    script = tmp_path / "stop.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)

    assert done.returncode == -15  # ended by its SIGTERM, as a service is
    assert "refused: ComputeError this process is stopping" in done.stdout
    assert "leaked" not in done.stderr and "resource_tracker" not in done.stderr, done.stderr
