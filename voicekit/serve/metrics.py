"""What ``voicekit serve`` measures, in the Prometheus exposition format (``GET /metrics``).

The metrics live in a registry of the server's own (not the process-wide default registry), so
several servers in one process (tests, an application embedding two) never mix their figures.
``prometheus-client`` is an optional dependency (``pip install 'voicekit[serve]'``): without it
the server runs the same and ``/metrics`` answers 501 naming the extra to install.
"""

from __future__ import annotations

from typing import Any, Final

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError:  # pragma: no cover - exercised only where the extra is not installed
    prometheus_client = None  # type: ignore[assignment]

#: Where latencies fall, in seconds: fine below 100 ms (the target for the handler is 50 ms),
#: coarse up to the seconds a lagging server produces.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MISSING: Final = ("metrics need the prometheus-client package: pip install 'voicekit[serve]' "
                  "(or pip install prometheus-client)\n")


class _Null:
    """Stands in for a metric when prometheus-client is not installed."""

    def labels(self, *_: Any, **__: Any) -> _Null:
        return self

    def inc(self, *_: Any) -> None:
        pass

    def set(self, *_: Any) -> None:
        pass

    def observe(self, *_: Any) -> None:
        pass


class ServeMetrics:
    """The server's metrics. Every name starts ``voicekit_serve_``."""

    registry: Any
    sessions_active: Any
    max_sessions: Any
    sessions_started: Any
    sessions_refused: Any
    sessions_ended: Any
    sessions_shed: Any
    turn_latency: Any
    barge_in_latency: Any
    errors: Any
    audio_backlog: Any
    audio_backlog_max: Any
    loop_lag: Any
    loop_lag_seconds: Any
    ready: Any
    draining: Any

    def __init__(self) -> None:
        self.available = prometheus_client is not None
        if prometheus_client is None:
            null: Any = _Null()
            self.registry = None
            self.sessions_active = self.sessions_started = self.sessions_refused = null
            self.sessions_ended = self.sessions_shed = self.turn_latency = self.barge_in_latency = null
            self.errors = self.audio_backlog = self.audio_backlog_max = self.loop_lag = null
            self.loop_lag_seconds = self.ready = self.draining = self.max_sessions = null
            return
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.sessions_active = Gauge("voicekit_serve_sessions_active", "Conversations running now", registry=r)
        self.max_sessions = Gauge("voicekit_serve_max_sessions", "The --max-sessions limit", registry=r)
        self.sessions_started = Counter("voicekit_serve_sessions_started", "Conversations started", registry=r)
        self.sessions_refused = Counter(
            "voicekit_serve_sessions_refused", "New conversations refused, by reason "
            "(max_sessions, loop_lag, draining)", ["reason"], registry=r)
        self.sessions_ended = Counter(
            "voicekit_serve_sessions_ended", "Conversations ended, by how (session_ended, client_left, "
            "backlog, drained, idle_timeout, protocol_error, session_failed)", ["reason"], registry=r)
        self.sessions_shed = Counter(
            "voicekit_serve_sessions_shed", "Running conversations closed because they fell behind real time",
            registry=r)
        self.turn_latency = Histogram(
            "voicekit_serve_turn_latency_seconds", "From the end of the user's speech (the endpointer's "
            "decision) to the handler being called (stage=handler) and to the first reply audio sent "
            "(stage=first_audio)", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.barge_in_latency = Histogram(
            "voicekit_serve_barge_in_latency_seconds", "From the start of the user's speech during a reply "
            "to the reply being stopped", buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("voicekit_serve_errors", "Errors, by kind", ["kind"], registry=r)
        self.audio_backlog = Histogram(
            "voicekit_serve_audio_backlog_seconds", "Audio received but not yet processed by its session, "
            "sampled per conversation", buckets=LAG_BUCKETS, registry=r)
        self.audio_backlog_max = Gauge(
            "voicekit_serve_audio_backlog_max_seconds", "The largest backlog among the running conversations",
            registry=r)
        self.loop_lag = Histogram(
            "voicekit_serve_event_loop_lag_seconds", "How late a timer wakes up on the server's event loop",
            buckets=LAG_BUCKETS, registry=r)
        self.loop_lag_seconds = Gauge(
            "voicekit_serve_event_loop_lag_recent_seconds", "The mean event-loop lag over the last second",
            registry=r)
        self.ready = Gauge("voicekit_serve_ready", "1 when /readyz answers 200 (accepting conversations)",
                           registry=r)
        self.draining = Gauge("voicekit_serve_draining", "1 while the server drains (after SIGTERM)", registry=r)

    def render(self) -> bytes | None:
        """The exposition text, or None without prometheus-client."""
        if prometheus_client is None or self.registry is None:
            return None
        return bytes(prometheus_client.generate_latest(self.registry))
