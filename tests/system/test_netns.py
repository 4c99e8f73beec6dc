"""Party A, party B and arbiter C on three hosts that really are separate: Linux network namespaces.

The test makes four namespaces of its own: one per service, each with one
interface ``eth0`` and its own address (10.77.0.1 A, 10.77.0.2 B, 10.77.0.3 C),
and a "switch" namespace holding a bridge that joins the three veth cables.
Nothing is added to the namespace the test runs in, so every packet the
services send stays inside namespaces this test made; proxy variables are
dropped from their environment so nothing tries to leave.

Three tests share the federation: a job end to end; a job whose party A is
unplugged mid-training (it must ride out the cut or fail saying who was
unreachable, and leave the services able to run the next job); and a job
failed that way, resumed by hand.

The orchestrator sits at the bank: a small agent process started with
``ip netns exec`` in B's namespace makes the REST calls (to B, and over the
switch to A and C) and hands the answers back through a pipe.

Cutting a link is unplugging A's cable at the switch (``ip link set ... down``
on the bridge port): A loses carrier, and B and C see nothing come back.

Everything is torn down afterwards, also on failure: the services, anything
else still running in the namespaces, and the namespaces themselves (which
takes the veths and the bridge with them). Where namespaces cannot be made
(no ``ip``, not root, no permission) the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import add_limits
from vfl.demo.services import write_demo_files

PREFIX = "vflnet"
SHORT = {"party-a": "a", "party-b": "b", "arbiter": "c"}
ADDRESSES = {"party-a": "10.77.0.1", "party-b": "10.77.0.2", "arbiter": "10.77.0.3"}
PORTS = {"party-a": 8701, "party-b": 8702, "arbiter": 8703}
URLS = {name: f"https://{ADDRESSES[name]}:{PORTS[name]}" for name in ADDRESSES}
# Short limits so a dead link is noticed in seconds, not minutes.
LIMITS = {"heartbeat": 1.0, "peer_timeout": 4.0, "request_timeout": 8.0, "workers": 1}
TRAINING = {"epochs": 10, "tol": 0, "batch_size": 150, "optimizer": "adam", "validation_fraction": 0.2}
CUT_AT_EPOCH = 2
CUT_SECONDS = 10.0  # ten heartbeats, two and a half peer timeouts
JOB_TIMEOUT = 90.0
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.lower() not in PROXY_VARIABLES}


class Network:
    """Four namespaces of our own: a switch (a bridge) and one host per service, cabled by veths."""

    def __init__(self) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.switch = f"{tag}-sw"
        self.hosts = {name: f"{tag}-{short}" for name, short in SHORT.items()}
        self.made: list[str] = []

    @staticmethod
    def sweep_stale() -> None:
        """Namespaces of an earlier run of this test whose pytest died before its teardown."""
        listed = ip("netns", "list", check=False).stdout
        for line in listed.splitlines():
            match = re.match(rf"({PREFIX}(\d+)-\w+)", line)
            if match and not Path(f"/proc/{match.group(2)}").exists():
                _kill_namespace(match.group(1))
                ip("netns", "del", match.group(1), check=False)

    def create(self) -> None:
        for ns in (self.switch, *self.hosts.values()):
            ip("netns", "add", ns)
            self.made.append(ns)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for name, ns in self.hosts.items():
            port = self.port(name)
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0")
            ip("-n", self.switch, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{ADDRESSES[name]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("netns", "exec", self.hosts["party-b"], "true")  # the services start this way

    @staticmethod
    def port(name: str) -> str:
        return f"port-{SHORT[name]}"

    def exec_prefix(self, name: str) -> list[str]:
        """Run a command on that host; with setpriv (util-linux) it is also killed should pytest die."""
        die_with_pytest = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        return [*die_with_pytest, "ip", "netns", "exec", self.hosts[name]]

    def cut(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(name), "down")

    def restore(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(name), "up")

    def destroy(self) -> list[int]:
        """Delete the namespaces (veths and bridge go with them); returns processes that would not die."""
        survivors = []
        for ns in reversed(self.made):
            survivors += _kill_namespace(ns)
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
        self.made.clear()
        return survivors


def _kill_namespace(ns: str) -> list[int]:
    """SIGKILL whatever still runs inside a namespace this test made; returns what is still there after 5 s."""
    pids: list[int] = []
    for _ in range(50):
        pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return pids


AGENT = r"""
import json, ssl, sys
import httpx
ca, token_files = sys.argv[1], json.loads(sys.argv[2])  # token_files: base URL -> that service's token file
tokens = {url: open(path).read().strip() for url, path in token_files.items()}
client = httpx.Client(verify=ssl.create_default_context(cafile=ca), trust_env=False)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    call = json.loads(line)
    token = next(t for url, t in tokens.items() if call["url"].startswith(url + "/"))
    try:
        response = client.request(call["method"], call["url"], json=call.get("json"), timeout=call["timeout"],
                                  headers={"Authorization": "Bearer " + token})
        try:
            body = response.json()
        except ValueError:
            body = response.text[:2000]
        answer = {"status": response.status_code, "body": body}
    except httpx.HTTPError as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer), flush=True)
"""


class Agent:
    """The orchestrator, at the bank: REST calls made from inside B's namespace."""

    def __init__(self, command: list[str], workdir: Path, ca: str, token_files: dict[str, str]) -> None:
        self.stderr = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [*command, sys.executable, "-u", "-c", AGENT, ca, json.dumps(token_files)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=clean_env(),
            start_new_session=True,
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self._read(60)

    def _read(self, timeout: float) -> dict[str, Any]:
        if not self.selector.select(timeout):
            raise AssertionError(f"the orchestration agent gave no answer in {timeout}s")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the orchestration agent exited: {Path(self.stderr.name).read_text()[-2000:]}")
        return json.loads(line)

    def call(self, method: str, url: str, body: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        """{"status", "body"}, or {"error"} when the service could not be reached."""
        self.process.stdin.write(json.dumps({"method": method, "url": url, "json": body, "timeout": timeout}) + "\n")
        self.process.stdin.flush()
        return self._read(timeout + 10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.selector.close()
        self.process.stdout.close()
        self.stderr.close()


class Federation:
    """Three `vfl serve` processes, one per namespace, and the orchestrator at B."""

    def __init__(self, workdir: Path, network: Network) -> None:
        self.workdir = workdir
        self.network = network
        self.processes: dict[str, subprocess.Popen] = {}
        self.agent: Agent | None = None
        self.job: dict[str, Any] = {}
        self.reference: dict[str, Any] | None = None  # an uninterrupted run of the job, to compare with

    def start(self, setup: dict[str, Any]) -> None:
        self.job = json.loads((self.workdir / "job.json").read_text())
        vfl = Path(sys.executable).with_name("vfl")
        command = [str(vfl)] if vfl.exists() else [sys.executable, "-m", "vfl.cli"]
        for name in ADDRESSES:
            log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
            self.processes[name] = subprocess.Popen(
                [*self.network.exec_prefix(name), *command, "serve", "--config", f"{name}.toml"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=clean_env(), start_new_session=True,
            )
            log.close()
        # The orchestrator holds each service's token (B's would do for jobs; A's and C's are asked too).
        token_files = {URLS[name]: str(setup["folders"][name] / "token") for name in ADDRESSES}
        self.agent = Agent(self.network.exec_prefix("party-b"), self.workdir, str(setup["verify"]), token_files)
        deadline = time.monotonic() + 60
        for name, url in URLS.items():
            while True:
                if self.processes[name].poll() is not None:
                    raise AssertionError(f"{name} exited during start-up:\n{self.log(name)}")
                answer = self.agent.call("GET", f"{url}/v1/health", timeout=3)
                if answer.get("status") == 200:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} at {url} never became healthy: {answer}\n{self.log(name)}")
                time.sleep(0.2)

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def call(self, name: str, method: str, path: str, body: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        assert self.agent is not None
        return self.agent.call(method, URLS[name] + path, body, timeout)

    def status(self, name: str, job_id: str) -> dict[str, Any] | None:
        answer = self.call(name, "GET", f"/v1/jobs/{job_id}")
        return answer["body"] if answer.get("status") == 200 else None

    def submit(self) -> str:
        answer = self.call("party-b", "POST", "/v1/jobs", self.job, timeout=30)
        assert answer.get("status") == 201, answer
        return answer["body"]["job_id"]

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT, name: str = "party-b") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.status(name, job_id) or status
            if status and status["state"] in ("succeeded", "failed", "cancelled"):
                return status
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} still not finished at {name} after {timeout:g}s: {status}\n"
                             + self.diagnosis(job_id))

    def run_uninterrupted(self) -> dict[str, Any]:
        """The job run once with nothing cut (kept, so later runs can be compared with it)."""
        if self.reference is None:
            job_id = self.submit()
            status = self.wait(job_id)
            assert status["state"] == "succeeded", f"{status['error']}\n{self.diagnosis(job_id)}"
            self.reference = status
        return self.reference

    def cut_mid_training(self, name: str, seconds: float) -> tuple[str, dict[str, Any]]:
        """Submit the job, unplug ``name`` once it is training at CUT_AT_EPOCH, plug it back after ``seconds``.

        Returns the job id and what B said at the end of the cut.
        """
        job_id = self.submit()
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            status = self.status("party-b", job_id)
            assert status is not None, f"party B does not answer for job {job_id}"
            if status["state"] == "training" and status["epoch"] >= CUT_AT_EPOCH:
                break
            assert status["state"] in ("pending", "aligning", "training"), status
            assert time.monotonic() < deadline, f"job never reached epoch {CUT_AT_EPOCH}: {status}"
            time.sleep(0.05)
        self.network.cut(name)
        cut = time.monotonic()
        try:
            time.sleep(seconds / 2)
            assert self.call(name, "GET", "/v1/health", timeout=1).get("error"), "the cut did not cut"
            time.sleep(max(0.0, cut + seconds - time.monotonic()))
            during = self.status("party-b", job_id) or {"state": "unknown (B did not answer)"}
        finally:
            self.network.restore(name)
        return job_id, {**during, "cut_at_epoch": status["epoch"]}

    def wait_everywhere(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, dict[str, Any]]:
        """The job's end at B, then at A and the arbiter, all within ``timeout``."""
        deadline = time.monotonic() + timeout
        final = {"party-b": self.wait(job_id, timeout)}
        for name in ("party-a", "arbiter"):
            final[name] = self.wait(job_id, timeout=max(5.0, deadline - time.monotonic()), name=name)
        return final

    def diagnosis(self, job_id: str) -> str:
        parts = []
        for name in ADDRESSES:
            parts.append(f"--- {name}: {self.status(name, job_id)}\n{self.log(name, 2000)}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.close()
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the service and its crypto workers (own session, so own group)
    except ProcessLookupError:
        pass


def _prepare(workdir: Path) -> dict[str, Any]:
    """The demo's files, moved onto the namespaces' addresses, with certificates for those addresses."""
    setup = write_demo_files(workdir, population=1200, key_bits=1024, training=TRAINING)
    for name in ADDRESSES:
        path = workdir / f"{name}.toml"
        text = path.read_text()
        for other, url in setup["urls"].items():
            text = text.replace(url.removeprefix("https://"), f"{ADDRESSES[other]}:{PORTS[other]}")
        path.write_text(text)
    add_limits(workdir, {name: LIMITS for name in ADDRESSES})
    hosts = [f"--host={name}={ADDRESSES[name]}" for name in ADDRESSES]
    # Over the demo's loopback certificates (hence --force): workdir/ca/ and each service's own folder, where the
    # configs look.
    subprocess.run([sys.executable, "-m", "vfl.cli", "certs", "--out", str(workdir), "--parties", ",".join(ADDRESSES),
                    *hosts, "--force"], check=True, capture_output=True, timeout=60)
    return setup


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "no `ip` binary (iproute2) to make network namespaces with"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    Network.sweep_stale()
    network = Network()
    cluster = Federation(tmp_path_factory.mktemp("netns"), network)
    try:
        try:
            network.create()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make network namespaces, veths or a bridge here: `{' '.join(exc.cmd)}`: "
                        f"{(exc.stderr or '').strip()}")
        cluster.start(_prepare(cluster.workdir))
        yield cluster
    finally:
        survivors: list[int] = []
        try:
            cluster.stop()
        finally:
            survivors = network.destroy()
    assert not any(p.poll() is None for p in cluster.processes.values())
    assert not survivors, f"processes in our namespaces that would not die: {survivors}"
    left = [ns for ns in (network.switch, *network.hosts.values()) if ns in ip("netns", "list", check=False).stdout]
    assert not left, f"namespaces left behind: {left}"


def test_a_job_runs_across_three_namespaces(federation):
    status = federation.run_uninterrupted()

    assert status["epoch"] == TRAINING["epochs"]
    assert status["alignment"]["intersection"] > 300
    assert status["metrics"]["validation"]["auc"] > 0.6
    assert {"auc", "ks", "accuracy", "precision", "recall", "f1"} <= set(status["metrics"]["train"])
    for name in ("party-a", "arbiter"):  # the other two hosts agree, over the switch
        assert federation.status(name, status["job_id"])["state"] == "succeeded"


def _check_failure(final: dict[str, dict[str, Any]]) -> None:
    """Failed at all three, each saying which peer, at which address, it could not reach."""
    states = {n: s["state"] for n, s in final.items()}
    assert set(states.values()) == {"failed"}, states
    for name, status in final.items():
        error = status["error"] or ""
        assert re.search(r"unreachable|stopped answering", error), (name, error)
        assert re.search(r"peer '(party-a|party-b|arbiter)' at https://10\.77\.0\.[123]:87\d\d/", error), (name, error)


def test_cutting_party_a_off_mid_training_resumes_or_fails_cleanly(federation):
    """Unplug A for ten heartbeats mid-training, plug it back: the job succeeds, or fails saying who was gone.

    Either way it ends within a bound, at all three parties alike, and nothing is left damaged: every
    service answers, and the same job submitted again ends with the same losses as before the cut
    (batches are seeded and the arithmetic exact, so any corruption would show).
    """
    reference = federation.run_uninterrupted()
    job_id, during = federation.cut_mid_training("party-a", CUT_SECONDS)
    restored = time.monotonic()

    final = federation.wait_everywhere(job_id)
    states = {n: s["state"] for n, s in final.items()}
    print(f"\nlink to party A cut at epoch {during['cut_at_epoch']} for {CUT_SECONDS:g}s (heartbeat "
          f"{LIMITS['heartbeat']:g}s, peer_timeout {LIMITS['peer_timeout']:g}s); at the end of the cut B had the job "
          f"{during['state']}; {time.monotonic() - restored:.1f}s after the link came back: {states}")
    status = final["party-b"]
    if status["state"] == "succeeded":
        print("outcome: RESUMED, the job rode out the cut and succeeded")
        assert set(states.values()) == {"succeeded"}, states
        assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-9)
    else:
        print("outcome: FAILED, with\n" + "\n".join(f"  {n}: {s['error']}" for n, s in final.items()))
        _check_failure(final)

    # Nothing is left broken: all three answer, and the same job again runs to the same end.
    for name in ADDRESSES:
        assert federation.call(name, "GET", "/v1/health").get("status") == 200, name
    again_id = federation.submit()
    again = federation.wait(again_id)
    assert again["state"] == "succeeded", f"{again['error']}\n{federation.diagnosis(again_id)}"
    assert again["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-9)
    assert again["metrics"]["validation"]["auc"] == pytest.approx(reference["metrics"]["validation"]["auc"], abs=1e-9)


@pytest.mark.slow  # 10+ s; the tier also keeps a sibling test of the same path
def test_a_job_failed_by_a_cut_link_resumes_by_hand(federation):
    """README: ``POST /v1/jobs/{id}/resume`` continues a job that failed because a peer stayed down too long.

    Resumed as soon as all three report the failure, it must end as an uninterrupted run does.
    """
    reference = federation.run_uninterrupted()
    job_id, _ = federation.cut_mid_training("party-a", CUT_SECONDS)
    final = federation.wait_everywhere(job_id)
    if final["party-b"]["state"] == "succeeded":
        pytest.skip("the job rode out the cut, so there was nothing to resume")
    _check_failure(final)

    answer = federation.call("party-b", "POST", f"/v1/jobs/{job_id}/resume")
    assert answer.get("status") == 200, answer
    final = federation.wait_everywhere(job_id)
    status = final["party-b"]
    print(f"\nafter POST /v1/jobs/{job_id}/resume: " + ", ".join(f"{n} {s['state']}" for n, s in final.items())
          + (f"; B's error: {status['error']}" if status["error"] else ""))
    error = status["error"] or ""
    assert status["state"] == "succeeded", f"{error}\n{federation.diagnosis(job_id)}"
    assert {s["state"] for s in final.values()} == {"succeeded"}
    assert status["resumes"] >= 1
    assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-9)
