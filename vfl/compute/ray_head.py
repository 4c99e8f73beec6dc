"""A private one-node Ray cluster on this machine: for tests and benchmarks, and a service's engine without an address.

:class:`LocalRayHead` starts ``ray start --head --block`` as a process of its
own, the way a party starts the head of its cluster, so that a
:class:`~vfl.compute.engine.RayEngine` connects to it by address exactly as a service
does. Everything stays on this machine and this run:

* **loopback only**: the head and its workers bind to 127.0.0.1 (Ray would
  otherwise pick the machine's network address);
* **a token of its own**: Ray's token authentication with a fresh random
  token, handed to the head and to this process through the environment
  (never a file in the home directory);
* **its own folders and ports**: a temporary directory for Ray's sessions and
  sockets, free ports for the head's services;
* **its own process group**: :meth:`stop` ends that group (SIGTERM, then
  SIGKILL for anything left), so no Ray process outlives the test or
  benchmark, and no other Ray instance on the machine is touched.

A service configured with ``engine = "ray"`` and no ``address`` runs on one of
these (never on Ray's defaults); real deployments run ``ray start`` on their
nodes (see docs/scaling.md).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vfl.compute.childproc import ends_with_parent
from vfl.errors import ComputeError

#: How long ``ray start`` may take to bring the head up (about 3 s on 2 cores).
START_TIMEOUT_SECONDS = 60.0

#: How long the head may take to exit on SIGTERM before it is killed.
GRACE_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _short_root(root: str | None) -> str:
    """Where the head's folder goes: ``root`` (the party's own), unless Ray's socket paths (at most 107 bytes,
    about 60 below the folder) would not fit there; then /tmp. The folder itself is 0700 either way."""
    if root is not None and len(os.fsencode(root)) <= 40:
        os.makedirs(root, mode=0o700, exist_ok=True)
        return root
    return "/tmp"


def _ray_cli() -> str:
    """The ``ray`` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise ComputeError("the `ray` command is not installed: pip install 'vfl[ray]'")
    return found


class LocalRayHead:
    """``ray start --head`` with ``num_cpus`` CPUs on 127.0.0.1; use as a context manager.

    After :meth:`start`, ``address`` is the head's ``host:port`` and this
    process's environment carries what a driver needs to connect to it (the
    token, loopback addressing); :meth:`stop` takes both back.
    """

    def __init__(self, num_cpus: int, *, root: str | None = None) -> None:
        if num_cpus < 1:
            raise ValueError(f"num_cpus must be at least 1, got {num_cpus}")
        self.num_cpus = num_cpus
        self.root = root
        self.address: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_flag: bool | None = None

    def _env(self, token: str) -> dict[str, str]:
        return {
            # Keep Ray on loopback: with this set, "127.0.0.1" stays 127.0.0.1 instead of
            # being replaced by the machine's network address (ray._private.services).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def start(self) -> str:
        token = secrets.token_hex(32)
        env_vars = self._env(token)
        self._dir = tempfile.mkdtemp(prefix="vflray-", dir=_short_root(self.root))  # 0700, this user's only
        port = _free_port()
        command = [
            _ray_cli(), "start", "--head", "--block",
            "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--dashboard-agent-listen-port", str(_free_port()),
            "--include-dashboard=false", "--disable-usage-stats",
            # Ray makes its temp dir 0777: a folder below our 0700 one keeps it private all the same.
            "--temp-dir", os.path.join(self._dir, "r"),
        ]
        log = open(os.path.join(self._dir, "ray-start.log"), "wb")
        self._process = subprocess.Popen(
            command, env={**os.environ, **env_vars}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends exactly this cluster
            preexec_fn=ends_with_parent(),  # and a service killed outright does not leave it behind
        )
        log.close()
        self._saved_env = {k: os.environ.get(k) for k in env_vars}
        os.environ.update(env_vars)
        self._saved_flag = _ray_cluster_flag(False)
        self.address = f"127.0.0.1:{port}"
        self._wait_until_up()
        return self.address

    def _wait_until_up(self) -> None:
        assert self._process is not None and self._dir is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        log = Path(self._dir, "ray-start.log")
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                text = log.read_text(errors="replace")[-2000:]
                self.stop()
                raise ComputeError(f"`ray start --head` exited with {code}:\n{text}")
            if "Ray runtime started" in log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        self.stop()
        raise ComputeError(f"the Ray head did not come up within {START_TIMEOUT_SECONDS:.0f} s")

    def stop(self) -> None:
        """End the head and every process it started; restore this process's environment.

        A driver still connected from this process is disconnected first (its
        Ray client would otherwise wait a minute for the lost head, then abort
        the process). The head gets SIGTERM and ``GRACE_SECONDS`` to exit; Ray
        takes half a minute to shut down politely, which a throw-away cluster
        need not wait for, so what is left then gets SIGKILL.
        """
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        process, self._process = self._process, None
        if process is not None:
            pgid = process.pid  # start_new_session: the group is the head command's own pid
            # Ray's worker processes get sessions of their own: find them (the group's descendants) first.
            members = _descendants(pgid)
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + GRACE_SECONDS
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
            _signal_group(pgid, signal.SIGKILL)
            for pid, started in members.items():
                if _start_time(pid) == started:  # still that process, not a new one with its pid
                    _signal(pid, signal.SIGKILL)
            process.wait(timeout=30)
            deadline = time.monotonic() + 10
            # SIGKILL is not instant, and the killed daemons are zombies until init reaps them.
            while time.monotonic() < deadline and (
                _group_alive(pgid, zombies=True) or any(_start_time(p) == t for p, t in members.items())
            ):
                time.sleep(0.1)
        if self._saved_env:
            _ray_cluster_flag(self._saved_flag)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalRayHead:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ray_cluster_flag(value: bool | None) -> bool | None:
    """Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is imported: if this process has
    imported it already, set the flag it was read into to ``value`` (None: leave it) and return the old one."""
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        return None
    old = bool(constants.ENABLE_RAY_CLUSTER)
    if value is not None:
        constants.ENABLE_RAY_CLUSTER = value
    return old


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _processes() -> dict[int, tuple[str, int, int, int]]:
    """pid → (state, parent pid, process group, start time) of every process, from /proc (Linux)."""
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(pgid: int) -> dict[int, int]:
    """pid → start time of every process of group ``pgid`` and every descendant of one (whatever its group)."""
    table = _processes()
    found = {pid for pid, (_, _, group, _) in table.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (_, parent, _, _) in table.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return {pid: table[pid][3] for pid in found}


def _group_alive(pgid: int, *, zombies: bool = False) -> bool:
    """Whether a process of group ``pgid`` is still there (zombies count only if ``zombies``)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(group == pgid and (zombies or state != "Z") for state, _, group, _ in _processes().values())


__all__ = ["LocalRayHead"]
