"""The server's Prometheus metrics, in a registry of its own (one per engine, so that
many engines in one process, as in the tests, never clash). Nothing secret: counts,
durations and sizes, labelled by environment, status, phase and route."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from localcompute.core.models import Job

# Consumers shown by name in the per-consumer gauges; the rest are summed as "other", so
# that a crowd of addresses cannot grow the exposition without bound.
TOP_CONSUMERS = 10
OTHER = "other"

# Seconds: from a trivial step to the hour a job may run.
PHASE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, float("inf"))
PHASES = ("fetch", "algorithm", "filter", "publish")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Gauge(
            "localcompute_jobs",
            "Jobs in the store by environment and status.",
            ["environment", "status"],
            registry=r,
        )
        self.queued = Gauge(
            "localcompute_queue_length", "Jobs waiting for a slot.", ["environment"], registry=r
        )
        self.slots = Gauge(
            "localcompute_slots_in_use", "Jobs holding a slot.", ["environment"], registry=r
        )
        self.slots_total = Gauge(
            "localcompute_slots", "max_jobs of each environment.", ["environment"], registry=r
        )
        self.phase_seconds = Histogram(
            "localcompute_phase_seconds",
            "How long each phase of a job took.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.docker_errors = Gauge(
            "localcompute_docker_errors",
            "Failed Docker calls since start, by kind.",
            ["kind"],
            registry=r,
        )
        self.http_requests = Counter(
            "localcompute_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "localcompute_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.event_streams = Gauge(
            "localcompute_event_streams",
            "Event streams open now: the dashboard's and consumers' own.",
            ["stream"],
            registry=r,
        )
        self.pool_capacity = Gauge(
            "localcompute_pool_capacity",
            "What the host pool offers: cpu (cores), ram and disk (GiB), gpu (devices).",
            ["resource"],
            registry=r,
        )
        self.pool_in_use = Gauge(
            "localcompute_pool_in_use",
            "What running jobs hold of the pool, by environment, in the same units.",
            ["environment", "resource"],
            registry=r,
        )
        self.reconciled = Counter(
            "localcompute_reconciled",
            "Leftovers of crashes removed: containers, mounts, deleted jobs' files.",
            ["kind"],
            registry=r,
        )
        self.result_bytes = Counter(
            "localcompute_result_bytes", "Bytes of results served.", registry=r
        )
        self.consumer_jobs = Gauge(
            "localcompute_consumer_jobs",
            f"Jobs waiting and running per consumer: the {TOP_CONSUMERS} with the most "
            'unfinished jobs by address, the rest summed as "other".',
            ["consumer", "state"],
            registry=r,
        )
        self.refusals = Counter(
            "localcompute_refusals",
            "Requests refused by a limit (429), by the limit's setting name.",
            ["limit"],
            registry=r,
        )
        self.deadlines = Counter(
            "localcompute_queue_deadlines",
            "Jobs that waited past their queue deadline and ended unrun.",
            ["environment"],
            registry=r,
        )

    def job_finished(self, job: Job) -> None:
        """Each phase the job went through, from its recorded timestamps."""
        for phase in PHASES:
            started = getattr(job, f"{phase}_started_at")
            finished = getattr(job, f"{phase}_finished_at")
            if started is not None and finished is not None and finished >= started:
                self.phase_seconds.labels(phase).observe(finished - started)

    def refused(self, limit: str) -> None:
        self.refusals.labels(limit).inc()

    def deadline_hit(self, environment: str) -> None:
        self.deadlines.labels(environment).inc()

    def refresh_consumers(self, counts: Iterable[tuple[str, int, int]]) -> None:
        """(consumer, waiting, running) now: the top ones by name, the rest as "other"."""
        ranked = sorted(counts, key=lambda c: (-(c[1] + c[2]), c[0]))
        self.consumer_jobs.clear()
        rest = [0, 0]
        for i, (consumer, waiting, running) in enumerate(ranked):
            if i < TOP_CONSUMERS:
                self.consumer_jobs.labels(consumer, "waiting").set(waiting)
                self.consumer_jobs.labels(consumer, "running").set(running)
            else:
                rest[0] += waiting
                rest[1] += running
        if len(ranked) > TOP_CONSUMERS:
            self.consumer_jobs.labels(OTHER, "waiting").set(rest[0])
            self.consumer_jobs.labels(OTHER, "running").set(rest[1])

    def swept(self, kind: str, count: int) -> None:
        if count:
            self.reconciled.labels(kind).inc(count)

    def pulled(self, seconds: float) -> None:
        self.phase_seconds.labels("pull").observe(seconds)

    def refresh(
        self,
        counts: Iterable[tuple[str, int, int]],
        max_jobs: Mapping[str, int],
        docker_errors: Mapping[str, int],
    ) -> None:
        """The gauges as the store and the runtime say now (at each scrape)."""
        from localcompute.core.status import SLOT_STATUSES, JobStatus

        self.jobs.clear()
        queued = dict.fromkeys(max_jobs, 0)
        slots = dict.fromkeys(max_jobs, 0)
        for environment, status, count in counts:
            self.jobs.labels(environment, str(status)).set(count)
            if status == JobStatus.WARMING_UP:
                queued[environment] = queued.get(environment, 0) + count
            elif status in SLOT_STATUSES:
                slots[environment] = slots.get(environment, 0) + count
        for environment, count in queued.items():
            self.queued.labels(environment).set(count)
        for environment, count in slots.items():
            self.slots.labels(environment).set(count)
        for environment, count in max_jobs.items():
            self.slots_total.labels(environment).set(count)
        for kind, count in docker_errors.items():
            self.docker_errors.labels(kind).set(count)

    def refresh_pool(
        self, capacity: Mapping[str, float], in_use: Mapping[str, Mapping[str, float]]
    ) -> None:
        for resource, amount in capacity.items():
            self.pool_capacity.labels(resource).set(amount)
        self.pool_in_use.clear()
        for environment, held in in_use.items():
            for resource, amount in held.items():
                self.pool_in_use.labels(environment, resource).set(amount)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
