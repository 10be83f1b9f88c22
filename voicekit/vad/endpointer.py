"""Endpointing: turn per-frame VAD decisions into speech-started / speech-ended.

A pure state machine (no I/O, no clock): feed it audio frames of any size, get back the same
audio re-cut into VAD frames, interleaved with :class:`SpeechStart` / :class:`SpeechEnd`
markers at exact audio times. The session forwards both to the ASR stream.

Rules (all durations in ms of audio):

* speech starts when ``start_ms`` of voiced frames occur within the last ``start_window_ms``;
  its time is that of the first voiced frame of the run, less ``pre_roll_ms`` — the pre-roll
  frames are held back and emitted *after* the start marker so no first syllable is clipped;
* speech ends at the end of the last voiced frame once ``end_silence_ms`` of unvoiced frames
  have followed it (``SpeechEnd.t`` is the end of the last voiced frame, ``SpeechEnd.detected_at``
  the end of the silence that confirmed it);
* ``max_speech_ms`` (optional) forces an end on a run-on utterance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import attrs

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.errors import ConfigError
from voicekit.vad.base import VADBackend


@attrs.frozen
class EndpointerConfig:
    pre_roll_ms: int = 300
    start_ms: int = 90
    start_window_ms: int = 150
    end_silence_ms: int = 600
    max_speech_ms: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.start_ms > self.start_window_ms:
            raise ConfigError(
                f"start_ms ({self.start_ms}) must not exceed start_window_ms ({self.start_window_ms})"
            )
        for name in ("pre_roll_ms", "start_ms", "start_window_ms", "end_silence_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")


@attrs.frozen
class SpeechStart:
    t: float  # audio seconds where the utterance (with pre-roll) begins
    voiced_at: float  # first voiced frame of the run that triggered the start


@attrs.frozen
class SpeechEnd:
    t: float  # end of the last voiced frame
    detected_at: float  # audio time when the silence confirmed the end
    duration: float  # from the first voiced frame to t


Item = AudioFrame | SpeechStart | SpeechEnd


class Endpointer:
    def __init__(self, vad: VADBackend, config: EndpointerConfig | None = None) -> None:
        self.vad = vad
        self.config = config or EndpointerConfig()
        self.rate = vad.sample_rate
        self.frame_samples = vad.sample_rate * vad.frame_ms // 1000
        self._frame_bytes = self.frame_samples * SAMPLE_WIDTH
        self._frame_s = vad.frame_ms / 1000
        c = self.config
        self._start_frames = max(1, -(-c.start_ms // vad.frame_ms))
        self._window_frames = max(self._start_frames, c.start_window_ms // vad.frame_ms)
        self._end_frames = max(1, -(-c.end_silence_ms // vad.frame_ms))
        self._pre_frames = c.pre_roll_ms // vad.frame_ms
        self._max_frames = None if c.max_speech_ms is None else max(1, c.max_speech_ms // vad.frame_ms)
        self._buf = b""
        self._t: float | None = None  # audio time of the first byte in _buf
        self._held: deque[tuple[AudioFrame, bool]] = deque()  # frames not yet released while silent
        self._window: deque[bool] = deque(maxlen=self._window_frames)
        self._window_voiced = 0  # voiced decisions in _window
        self.in_speech = False
        self._silence_run = 0
        self._speech_frames = 0
        self._first_voiced = 0.0
        self.last_voiced_end = 0.0
        self.voiced_frames = 0
        self.frames_seen = 0

    def push(self, frame: AudioFrame) -> Iterator[Item]:
        """Feed any amount of mono audio at the VAD's rate; yield frames and markers in order."""
        return iter(self.process(frame))

    def process(self, frame: AudioFrame) -> list[Item]:
        """:meth:`push`, as a list: what the session's live path calls once per input frame."""
        if frame.sample_rate != self.rate or frame.channels != 1:
            raise ValueError(
                f"endpointer expects mono {self.rate} Hz audio, got {frame.channels} ch {frame.sample_rate} Hz"
            )
        if self._t is None:
            self._t = frame.timestamp
        out: list[Item] = []
        size = self._frame_bytes
        buf = self._buf + frame.pcm if self._buf else frame.pcm
        end = len(buf) - size
        i = 0
        while i <= end:
            vf = AudioFrame.trusted(buf[i : i + size] if (i or end) else buf, self.rate, 1, self._t)
            i += size
            self._t += self._frame_s
            self._step(vf, out)
        self._buf = buf[i:] if i < len(buf) else b""
        return out

    def flush(self) -> Iterator[Item]:
        """End of input: release held audio and close an open utterance."""
        if self._buf and self._t is not None:
            vf = AudioFrame.trusted(self._buf, self.rate, 1, self._t)
            self._buf = b""
            if self.in_speech:
                yield vf
            else:
                self._held.append((vf, False))
        if self.in_speech:
            yield self._end(self._t or 0.0)
        while self._held:
            yield self._held.popleft()[0]

    def _step(self, vf: AudioFrame, out: list[Item]) -> None:
        voiced = self.vad.is_speech(vf.pcm)
        self.frames_seen += 1
        self.voiced_frames += voiced
        if not self.in_speech:
            held, window = self._held, self._window
            held.append((vf, voiced))
            if len(window) == self._window_frames:
                self._window_voiced -= window[0]  # the oldest decision leaves the window
            window.append(voiced)
            self._window_voiced += voiced
            if voiced and self._window_voiced >= self._start_frames:
                w0 = len(held) - len(window)
                idx = next(i for i in range(w0, len(held)) if held[i][1])
                first = held[idx][0]
                for _ in range(max(0, idx - self._pre_frames)):
                    out.append(held.popleft()[0])
                start_t = held[0][0].timestamp
                self.in_speech = True
                window.clear()
                self._window_voiced = 0
                self._silence_run = 0
                self._first_voiced = first.timestamp
                self.last_voiced_end = vf.end
                self._speech_frames = len(held)
                out.append(SpeechStart(start_t, first.timestamp))
                out.extend(f for f, _ in held)
                held.clear()
            elif len(held) > self._window_frames + self._pre_frames:
                out.append(held.popleft()[0])
            return
        self._speech_frames += 1
        if voiced:
            self._silence_run = 0
            self.last_voiced_end = vf.end
        else:
            self._silence_run += 1
        out.append(vf)
        if self._silence_run >= self._end_frames:
            out.append(self._end(vf.end))
        elif self._max_frames is not None and self._speech_frames >= self._max_frames:
            self.last_voiced_end = vf.end
            out.append(self._end(vf.end))

    def _end(self, detected_at: float) -> SpeechEnd:
        self.in_speech = False
        self._silence_run = 0
        return SpeechEnd(self.last_voiced_end, detected_at, self.last_voiced_end - self._first_voiced)
