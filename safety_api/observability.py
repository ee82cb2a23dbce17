"""Structured logs with a request id, and Prometheus metrics."""
import logging
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pythonjsonlogger.json import JsonFormatter

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class JobBacklog:
    """The durable job table as gauges, read at each scrape (in the /metrics request): jobs due and not yet
    claimed, how long the oldest has waited, and jobs running, by kind. The worker has no port of its own;
    any api process reports the table that all workers share."""

    def describe(self):
        return []  # so that registering never reads the database

    def collect(self):
        from safety_api.extensions import db
        from safety_api.services import jobs
        try:
            rows = jobs.backlog(db.session)
        except Exception:  # the database is away: /readyz says so; the other metrics still answer
            db.session.rollback()
            logging.getLogger(__name__).warning("job backlog not read for the metrics", exc_info=True)
            return
        due = GaugeMetricFamily("jobs_due", "Jobs due and not yet claimed", labels=["kind"])
        oldest = GaugeMetricFamily("jobs_oldest_due_seconds", "How long the oldest due job has waited",
                                   labels=["kind"])
        running = GaugeMetricFamily("jobs_running", "Jobs claimed by a worker", labels=["kind"])
        for kind, n_due, oldest_s, n_running in rows:
            due.add_metric([kind], n_due)
            oldest.add_metric([kind], float(oldest_s))
            running.add_metric([kind], n_running)
        yield from (due, oldest, running)


_job_backlog = JobBacklog()
REGISTRY.register(_job_backlog)


class RequestIdFilter(logging.Filter):
    """Stamp every log record with the current request's id, when there is one."""

    def filter(self, record):
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:  # outside a request or app context
            record.request_id = "-"
        return True


def configure_logging(level: str, json_logs: bool):
    """Send logs to stderr, as JSON lines in production."""
    handler = logging.StreamHandler()
    fmt = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"
    handler.setFormatter(JsonFormatter(fmt) if json_logs else logging.Formatter(fmt))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_app(app: Flask):
    """Log in structured form, tag requests with an id and count them."""
    if not app.config.get("TESTING"):
        configure_logging(app.config["LOG_LEVEL"], app.config["LOG_JSON"])

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        # gunicorn passes any token as a method: a label per invented method would grow without end.
        method = request.method if request.method in HTTP_METHODS else "other"
        REQUESTS.labels(method, endpoint, response.status_code).inc()
        if "started" in g:
            LATENCY.labels(method, endpoint).observe(time.perf_counter() - g.started)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    app.add_url_rule("/metrics", "metrics", lambda: Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST))
