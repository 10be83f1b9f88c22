"""A virtual sound card made of files, for testing live audio with no hardware and no daemon.

ALSA's ``file`` PCM plugin records what an application plays into a file and, with ``infile``,
hands it a file's bytes when it records. Pointing ``ALSA_CONFIG_PATH`` at a configuration that
defines such devices makes PortAudio (and so :mod:`voicekit.audio.device`) see a microphone and a
speaker. ALSA reads its configuration once per process, so the code under test runs in a child
process started with :attr:`VirtualSoundCard.env`.

Two modes:

* ``paced=False``: the microphone reads ``mic.raw`` (write it before the child starts) and the
  speaker writes ``speaker.raw``. Both run as fast as the application reads/writes: good for
  checking the bytes.
* ``paced=True``: both devices are named pipes and this object keeps them moving in real time
  with two threads of the *test* process (:meth:`start`/:meth:`stop`): one feeds the microphone
  20 ms of audio every 20 ms (silence, or the clips given to :meth:`say`), the other drains the
  speaker at the sample rate, noting when each byte was "played". A full pipe makes the
  application's writes block, like a real speaker; audio the application does not read in time
  is dropped, like a real microphone's overrun.

The device PCM is int16 little-endian at ``rate`` and ``channels``; the devices are wrapped in
ALSA's ``plug`` converter so applications may open them at other rates (ALSA converts), or, with
``fixed_format=False``, the files hold whatever format the application opened.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

F_SETPIPE_SZ: Final = 1031  # Linux fcntl: set a pipe's capacity
MIC: Final = "vk_mic"
SPEAKER: Final = "vk_speaker"


def _quote(path: Path) -> str:
    text = str(path)
    if '"' in text or "\\" in text:
        raise ValueError(f"ALSA configuration paths cannot contain quotes or backslashes: {text!r}")
    return f'"{text}"'


def _file_pcm(file: Path, infile: Path | None) -> str:
    inner = f"type file slave.pcm {{ type null }} file {_quote(file)} format \"raw\""
    if infile is not None:
        inner += f" infile {_quote(infile)}"
    return inner


def alsa_config(mic_in: Path, speaker_out: Path, *, rate: int = 16000, channels: int = 1,
                fixed_format: bool = True) -> str:
    """An ALSA configuration defining ``vk_mic``, ``vk_speaker`` and ``default`` (both)."""
    def device(name: str, pcm: str) -> str:
        if not fixed_format:
            return f"pcm.{name} {{ {pcm} }}\n"
        return (f"pcm.{name} {{\n  type plug\n  slave {{ pcm {{ {pcm} }} rate {rate} channels {channels} "
                f"format S16_LE }}\n}}\n")

    # PortAudio 19.6 needs a "default" device in the list or it trips an assertion.
    return (device(MIC, _file_pcm(Path(os.devnull), mic_in))
            + device(SPEAKER, _file_pcm(speaker_out, None))
            + f"pcm.!default {{\n  type asym\n  playback.pcm \"{SPEAKER}\"\n  capture.pcm \"{MIC}\"\n}}\n")


def no_device_config() -> str:
    """An ALSA configuration whose only device cannot be opened: PortAudio sees no device."""
    return 'pcm.!default { type hw card "voicekit_no_such_card" }\n'


class VirtualSoundCard:
    """ALSA microphone and speaker backed by files or real-time named pipes (see the module doc)."""

    def __init__(self, folder: str | os.PathLike[str], *, rate: int = 16000, channels: int = 1,
                 paced: bool = False, fixed_format: bool = True, pipe_bytes: int = 4096,
                 tick_ms: int = 20) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rate = rate
        self.channels = channels
        self.paced = paced
        self.tick = tick_ms / 1000
        self.frame_bytes = 2 * channels
        self.mic_path = self.folder / ("mic.fifo" if paced else "mic.raw")
        self.speaker_path = self.folder / ("speaker.fifo" if paced else "speaker.raw")
        self.config_path = self.folder / "asound.conf"
        self.config_path.write_text(alsa_config(self.mic_path, self.speaker_path, rate=rate, channels=channels,
                                                fixed_format=fixed_format))
        self.pipe_bytes = pipe_bytes
        # paced-mode state
        self.mic_dropped_bytes = 0
        self.mic_drop_times: list[float] = []  # monotonic time of each dropped microphone chunk
        self.mic_fed_bytes = 0
        self.clip_times: list[float] = []  # monotonic time each clip given to say() started feeding
        self.played: list[tuple[float, bytes]] = []  # (monotonic time read, bytes) from the speaker
        self.mic_reading = threading.Event()
        self._clips: collections.deque[tuple[bytes, int]] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fds: list[int] = []
        if paced:
            for p in (self.mic_path, self.speaker_path):
                if p.exists():
                    p.unlink()
                os.mkfifo(p)
        else:
            self.mic_path.write_bytes(b"")

    @property
    def env(self) -> dict[str, str]:
        """Environment for the child process: the ALSA configuration, JACK kept quiet."""
        return {**os.environ, "ALSA_CONFIG_PATH": str(self.config_path), "JACK_NO_START_SERVER": "1"}

    # -- files mode ---------------------------------------------------------------------------

    def set_mic_audio(self, pcm: bytes) -> None:
        """Files mode: what the microphone will capture (int16 LE at ``rate``/``channels``)."""
        self.mic_path.write_bytes(pcm)

    def speaker_audio(self) -> npt.NDArray[np.int16]:
        """Everything the speaker received, as int16 samples of shape (n, channels)."""
        data = self.speaker_path.read_bytes() if not self.paced else b"".join(b for _, b in self.played)
        data = data[: len(data) - len(data) % self.frame_bytes]
        return np.frombuffer(data, dtype="<i2").reshape(-1, self.channels)

    # -- paced mode ---------------------------------------------------------------------------

    def say(self, pcm: bytes) -> int:
        """Paced mode: feed ``pcm`` into the microphone after what is queued; returns the clip's index
        (its start time appears in ``clip_times[index]``)."""
        with self._lock:
            index = len(self.clip_times) + len(self._clips)
            self._clips.append((pcm, index))
        return index

    def start(self) -> None:
        if not self.paced:
            raise RuntimeError("start() is for a paced card (paced=True)")
        wfd = os.open(self.mic_path, os.O_RDWR | os.O_NONBLOCK)
        rfd = os.open(self.speaker_path, os.O_RDONLY | os.O_NONBLOCK)
        self._fds = [wfd, rfd]
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, F_SETPIPE_SZ, self.pipe_bytes)
        self._threads = [threading.Thread(target=self._feed, args=(wfd,), daemon=True, name="vk-mic"),
                         threading.Thread(target=self._drain, args=(rfd,), daemon=True, name="vk-speaker")]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> VirtualSoundCard:
        if self.paced:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_chunk(self, size: int) -> tuple[bytes, float | None]:
        """The next ``size`` bytes for the microphone (clips, else silence)."""
        with self._lock:
            if not self._clips:
                return bytes(size), None
            pcm, index = self._clips[0]
            started = None
            if len(self.clip_times) <= index:
                started = time.monotonic()
                self.clip_times.append(started)
            chunk, rest = pcm[:size], pcm[size:]
            if rest:
                self._clips[0] = (rest, index)
            else:
                self._clips.popleft()
            return chunk + bytes(size - len(chunk)), started

    def _feed(self, fd: int) -> None:
        size = round(self.rate * self.tick) * self.frame_bytes
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            n += 1
            delay = t0 + n * self.tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            waiting = _pipe_fill(fd)
            if not self.mic_reading.is_set():
                if self.mic_fed_bytes and waiting < self.mic_fed_bytes:
                    self.mic_reading.set()  # the application has started reading
                elif waiting + size > self.pipe_bytes:
                    continue  # nobody reads yet: keep the pipe full of silence, queue nothing
                chunk: bytes = bytes(size)
            else:
                chunk, _ = self._next_chunk(size)
            try:
                os.write(fd, chunk)
                self.mic_fed_bytes += len(chunk)
            except BlockingIOError:
                self.mic_dropped_bytes += len(chunk)  # the application did not read in time: lost
                self.mic_drop_times.append(time.monotonic())

    def _drain(self, fd: int) -> None:
        per_second = self.rate * self.frame_bytes
        credit = 0.0
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(self.tick / 2)
            now = time.monotonic()
            credit += (now - last) * per_second
            last = now
            want = int(credit) - int(credit) % self.frame_bytes
            got = b""
            if want > 0:
                try:
                    got = os.read(fd, want)
                except BlockingIOError:
                    got = b""
            if got:
                self.played.append((now, got))
                credit -= len(got)
            if len(got) < want:
                credit = min(credit, self.tick * per_second)  # idle: the speaker does not bank time


def _pipe_fill(fd: int) -> int:
    """Bytes waiting in a pipe."""
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, "little", signed=True)


def played_segments(played: list[tuple[float, bytes]], *, channels: int = 1, threshold: int = 200,
                    rate: int = 16000) -> list[tuple[float, float]]:
    """Spans of monotonic time during which non-silent audio was played.

    Each read chunk of the speaker is timed at its read; a sample's time is interpolated from
    the chunk's time and its position in the chunk. Spans closer than 0.3 s are merged.
    """
    spans: list[tuple[float, float]] = []
    for t, data in played:
        a = np.frombuffer(data[: len(data) - len(data) % (2 * channels)], dtype="<i2").reshape(-1, channels)
        loud = np.flatnonzero(np.abs(a.astype(np.int32)).max(axis=1) > threshold)
        if not loud.size:
            continue
        start = t - (a.shape[0] - loud[0]) / rate
        end = t - (a.shape[0] - loud[-1] - 1) / rate
        if spans and start - spans[-1][1] < 0.3:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


class LiveAssistant:
    """``voicekit run ASSISTANT --input mic --output speaker --json`` in a child process wired to a
    :class:`VirtualSoundCard`. ``events`` collects the child's JSON events, each with a ``wall``
    time (``time.monotonic()`` when read). Leaving the block stops the child with Ctrl-C (SIGINT),
    as a person would; ``returncode`` is then its exit status."""

    def __init__(self, card: VirtualSoundCard, assistant: str = "robot", *, extra: tuple[str, ...] = (),
                 stderr: Any = None) -> None:
        self.card = card
        self.args = [sys.executable, "-m", "voicekit.cli.main", "run", assistant, "--input", "mic",
                     "--output", "speaker", "--json", *extra]
        self.stderr = stderr if stderr is not None else subprocess.DEVNULL
        self.events: list[dict[str, Any]] = []
        self.returncode: int | None = None
        self.stopped_at = 0.0

    def __enter__(self) -> LiveAssistant:
        env = {**self.card.env, "VOICEKIT_INPUT_DEVICE": "vk_mic", "VOICEKIT_OUTPUT_DEVICE": "vk_speaker"}
        self._child = subprocess.Popen(self.args, env=env, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._child.stdout is not None
        for line in self._child.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # not an event line
            event["wall"] = time.monotonic()
            self.events.append(event)

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]

    def __exit__(self, *exc: object) -> None:
        self.stopped_at = time.monotonic()
        self._child.send_signal(signal.SIGINT)
        try:
            self._child.wait(10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._reader.join(5)
        self.returncode = self._child.returncode
