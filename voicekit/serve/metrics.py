"""What ``voicekit serve`` measures, in the Prometheus exposition format (``GET /metrics``).

The metrics live in a registry of the server's own (not the process-wide default registry), so
several servers in one process (tests, an application embedding two) never mix their figures.
``prometheus-client`` is an optional dependency (``pip install 'voicekit[serve]'``): without it
the server runs the same and ``/metrics`` answers 501 naming the extra to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from voicekit.events import Error as ErrorEvent
from voicekit.events import Event, IntentMatched, ReplyInterrupted, ReplyStarted, SpeechEnded, SpeechStarted

if TYPE_CHECKING:
    from voicekit.serve.stream import WebSocketSink

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
#: Set (to a folder) in every worker of `voicekit serve --workers N`: prometheus-client's multiprocess mode.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
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
    vad_fallbacks: Any
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
            self.vad_fallbacks = null
            self.errors = self.audio_backlog = self.audio_backlog_max = self.loop_lag = null
            self.loop_lag_seconds = self.ready = self.draining = self.max_sessions = null
            return
        r = self.registry = CollectorRegistry(auto_describe=True)
        # under `voicekit serve --workers N` (prometheus-client's multiprocess mode) a scrape shows every
        # worker: counters and histograms summed, each gauge summed or the largest over the live workers
        self.sessions_active = Gauge("voicekit_serve_sessions_active", "Conversations running now", registry=r,
                                     multiprocess_mode="livesum")
        self.max_sessions = Gauge("voicekit_serve_max_sessions", "The --max-sessions limit", registry=r,
                                  multiprocess_mode="livesum")
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
        self.vad_fallbacks = Counter(
            "voicekit_serve_vad_fallbacks", "Running conversations switched to the cheaper VAD because they "
            "fell behind real time (--vad-fallback-backlog)", registry=r)
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
            registry=r, multiprocess_mode="livemax")
        self.loop_lag = Histogram(
            "voicekit_serve_event_loop_lag_seconds", "How late a timer wakes up on the server's event loop",
            buckets=LAG_BUCKETS, registry=r)
        self.loop_lag_seconds = Gauge(
            "voicekit_serve_event_loop_lag_recent_seconds", "The mean event-loop lag over the last second",
            registry=r, multiprocess_mode="livemax")
        self.ready = Gauge("voicekit_serve_ready", "1 when /readyz answers 200 (accepting conversations)",
                           registry=r, multiprocess_mode="livemax")
        self.draining = Gauge("voicekit_serve_draining", "1 while the server drains (after SIGTERM)", registry=r,
                              multiprocess_mode="livemax")

    def render(self) -> bytes | None:
        """The exposition text, or None without prometheus-client."""
        if prometheus_client is None or self.registry is None:
            return None
        if os.environ.get(MULTIPROC_ENV):  # one of several worker processes: all of them
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(prometheus_client.generate_latest(merged))
        return bytes(prometheus_client.generate_latest(self.registry))


@attrs.define
class ServerStats:
    """Plain counters of what the server did (``VoiceServer.stats``), for tests and embedders."""

    connections: int = 0  # TCP connections accepted
    sessions_started: int = 0
    sessions_finished: int = 0
    rejected_busy: int = 0
    rejected_unauthorized: int = 0
    protocol_errors: int = 0  # bad messages and frames the WebSocket layer could not parse
    rejected_address: int = 0  # refused: too many unauthenticated connections from one address
    evicted: int = 0  # unauthenticated connections dropped because the pool was full
    idle_closed: int = 0  # conversations closed by the idle timeout
    refused_loop_lag: int = 0  # new conversations refused: the event loop lagged (--max-loop-lag)
    refused_draining: int = 0  # new conversations refused: the server drains
    refused_at_upgrade: int = 0  # of all refusals, those answered HTTP 503 to the upgrade
    shed: int = 0  # running conversations closed: they fell behind real time (--max-backlog)
    vad_fallbacks: int = 0  # running conversations switched to the cheaper VAD (--vad-fallback-backlog)
    drained: int = 0  # running conversations closed by a drain at its deadline (1012)
    connection_failures: int = 0  # connections that ended in an unexpected exception (logged)
    end_reasons: list[str] = attrs.Factory(list)  # how each session ended: "input ended", "cancelled", ...


@attrs.define
class TurnTimer:
    """Turn and barge-in latencies of one conversation, from its session's own event times."""

    metrics: ServeMetrics
    speech_end: float | None = None
    barge_start: float | None = None
    replying: bool = False

    def observe(self, event: Event, now: Callable[[], float], sink: WebSocketSink | None) -> None:
        m = self.metrics
        if isinstance(event, SpeechStarted):
            if self.replying:
                self.barge_start = event.t
        elif isinstance(event, SpeechEnded):
            self.speech_end = event.t
        elif isinstance(event, IntentMatched):
            if self.speech_end is not None:
                m.turn_latency.labels("handler").observe(max(0.0, event.t - self.speech_end))
        elif isinstance(event, ReplyStarted):
            self.replying = True
            end = self.speech_end
            if sink is not None and end is not None:
                sink.on_next_write(lambda: m.turn_latency.labels("first_audio").observe(max(0.0, now() - end)))
        elif event.kind in ("reply_finished", "reply_interrupted"):
            self.replying = False
            if isinstance(event, ReplyInterrupted) and self.barge_start is not None:
                m.barge_in_latency.observe(max(0.0, event.t - self.barge_start))
            self.barge_start = None
        elif isinstance(event, ErrorEvent):
            m.errors.labels(f"session_{event.where}").inc()
