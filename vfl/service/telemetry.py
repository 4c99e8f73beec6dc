"""What a service counts for Prometheus: ``GET /metrics`` (text exposition format).

Each service has its own :class:`Telemetry` with its own
``CollectorRegistry`` (never prometheus_client's global one), so several services
in one process (the in-process tests) count apart.

=====================================  =========  ==========================================================
``vfl_jobs{state}``                    gauge      jobs this service knows, by state (every state listed)
``vfl_epoch_duration_seconds``         histogram  wall time of each training epoch, as this party saw it
``vfl_peer_messages_total``            counter    protocol messages, by ``peer`` and ``direction`` (sent,
                                                  received)
``vfl_peer_message_bytes_total``       counter    their frames' bytes, by ``peer`` and ``direction``
``vfl_refusals_total{reason}``         counter    requests refused with a 4xx: the error's class name
                                                  (``ScheduleViolation``, ``PeerNotAllowed``, ...),
                                                  ``BadToken``, ``NoClientCertificate``, ``NotAPeer``,
                                                  ``BodyTooLarge``, ``ValidationError``
``vfl_prediction_duration_seconds``    histogram  by ``kind``: ``predict`` (party B, a whole federated
                                                  prediction) and ``partial_scores`` (party A's part)
``vfl_worker_pool_size``               gauge      crypto workers: processes (local) or tasks at once (Ray)
``vfl_score_psi{job}``                 gauge      party B, a served scorecard job: the served scores' PSI
                                                  against the training score bands
``vfl_score_psi_status{job}``          gauge      its status: 0 stable (< 0.1), 1 watch (< 0.25), 2 alarm
``vfl_score_served_rows{job}``         gauge      the served scores it is computed on
``vfl_characteristic_csi``             gauge      B or a feature party, a served scorecard job: each of this
``{job,characteristic}``                          party's own characteristics' CSI on the rows it served
``vfl_characteristic_csi_status``      gauge      its status: 0 stable, 1 watch, 2 alarm
``{job,characteristic}``
=====================================  =========  ==========================================================

Stability is read at scrape time from the counts each job keeps in memory as it serves (predictions and
batches; party B's evaluation of the job is not serving), and only for jobs that have served a row.

An early message answered "not ready" is not a refusal (its sender retries it).
Labels are bounded: peers are configured peer ids, reasons are class names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vfl.service.lifecycle import JobState
from vfl.service.record import JobRecord

JOB_STATES: tuple[str, ...] = tuple(JobState)
EPOCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
PREDICTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CONTENT_TYPE = CONTENT_TYPE_LATEST


#: A stability status as the number its gauge shows.
STATUS_CODES = {"stable": 0, "watch": 1, "alarm": 2}


class _ServiceState(Collector):
    """What is read at scrape time: jobs by state, the worker pool, served scorecard jobs' stability."""

    def __init__(self, records: Callable[[], Iterable[JobRecord]], workers: int,
                 stability: Callable[[], Iterable[dict[str, Any]]] | None = None) -> None:
        self.records = records
        self.workers = workers
        self.stability = stability

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("vfl_jobs", "Jobs this service knows, by state", labels=["state"])
        counts = dict.fromkeys(JOB_STATES, 0)
        for record in self.records():
            counts[str(record.state)] = counts.get(str(record.state), 0) + 1
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily("vfl_worker_pool_size", "Crypto workers: processes (local engine) or tasks at "
                                "once (Ray)", value=self.workers)
        if self.stability is not None:
            yield from _stability_metrics(self.stability())


def _stability_metrics(reports: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    """Gauges of served scorecard jobs' stability, from each job's answer to GET /v1/jobs/{id}/stability."""
    psi = GaugeMetricFamily("vfl_score_psi", "A served scorecard job's score PSI against its training score bands "
                            "(party B)", labels=["job"])
    psi_status = GaugeMetricFamily("vfl_score_psi_status", "Its status: 0 stable (< 0.1), 1 watch (< 0.25), "
                                   "2 alarm", labels=["job"])
    psi_rows = GaugeMetricFamily("vfl_score_served_rows", "The served scores the score PSI is computed on",
                                 labels=["job"])
    csi = GaugeMetricFamily("vfl_characteristic_csi", "A served scorecard job's CSI of each of this party's "
                            "characteristics, on the rows it served", labels=["job", "characteristic"])
    csi_status = GaugeMetricFamily("vfl_characteristic_csi_status", "Its status: 0 stable (< 0.1), 1 watch "
                                   "(< 0.25), 2 alarm", labels=["job", "characteristic"])
    for report in reports:
        job = str(report.get("job_id"))
        score = report.get("score")
        if score and score.get("rows"):
            psi.add_metric([job], float(score["psi"]))
            psi_status.add_metric([job], STATUS_CODES.get(str(score.get("status")), -1))
            psi_rows.add_metric([job], int(score["rows"]))
        for entry in report.get("characteristics") or ():
            if entry.get("rows"):
                name = str(entry.get("characteristic"))
                csi.add_metric([job, name], float(entry["csi"]))
                csi_status.add_metric([job, name], STATUS_CODES.get(str(entry.get("status")), -1))
    yield from (psi, psi_status, psi_rows, csi, csi_status)


class Telemetry:
    """One service's metrics; ``records`` lists its jobs at scrape time, ``workers`` is its crypto pool's size,
    ``stability`` gives the stability of its served scorecard jobs at scrape time."""

    def __init__(self, records: Callable[[], Iterable[JobRecord]], workers: int,
                 stability: Callable[[], Iterable[dict[str, Any]]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.epoch_seconds = Histogram(
            "vfl_epoch_duration_seconds", "Wall time of one training epoch at this party",
            buckets=EPOCH_BUCKETS, registry=self.registry)
        self.messages = Counter(
            "vfl_peer_messages", "Protocol messages exchanged with each peer", ["peer", "direction"],
            registry=self.registry)
        self.message_bytes = Counter(
            "vfl_peer_message_bytes", "Bytes of protocol message frames exchanged with each peer",
            ["peer", "direction"], registry=self.registry)
        self.refusals = Counter(
            "vfl_refusals", "Requests this service refused (4xx), by reason", ["reason"], registry=self.registry)
        self.prediction_seconds = Histogram(
            "vfl_prediction_duration_seconds", "Latency of predictions (B) and partial scores (A)", ["kind"],
            buckets=PREDICTION_BUCKETS, registry=self.registry)
        self.registry.register(_ServiceState(records, workers, stability))

    def message(self, peer: str, direction: str, size: int) -> None:
        self.messages.labels(peer=peer, direction=direction).inc()
        self.message_bytes.labels(peer=peer, direction=direction).inc(size)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
