"""Fuzz every decoder entry point and every sans-IO protocol parser at volume; print crashes and hangs.

    python bench/bench_fuzz.py                 # 10,000 inputs per target (the figure in the notes)
    python bench/bench_fuzz.py --count 200     # a quick slice (the test suite runs 40)
    python bench/bench_fuzz.py --target probe --count 1000 --seed 3

Inputs are generated from a seed, so a finding is reproduced with ``--target T --seed S --start I
--count 1``. A *crash* is any exception other than the typed ``voicekit.errors.VoicekitError`` family
(every protocol and audio error derives from it) — a ``KeyError``, ``TypeError``, ``RecursionError``,
an ``ExceptionGroup`` or a dead worker. A *hang* is an input that takes longer than ``--hang-s``.

Targets run in a worker process that reports each input as it finishes; the parent watches the
clock, so even a hang inside FFmpeg's C code is caught: the worker is killed, the input recorded,
and the run resumes at the next input. The goal is ``crashes=0 hangs=0`` on every target.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import os
import random
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

# ------------------------------------------------------------------------------------------ audio seeds


def _wav(payload: bytes, *, tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def audio_seeds() -> list[bytes]:
    """Small valid files in several formats (WAV variants here, the rest encoded by FFmpeg)."""
    import math

    import numpy as np

    rate = 16000
    tone = np.array([0.4 * math.sin(2 * math.pi * 440 * i / rate) for i in range(rate // 4)], np.float32)
    seeds = [_wav((tone * 32767).astype("<i2").tobytes()),
             _wav(tone.astype("<f4").tobytes(), tag=3, bits=32),
             _wav(((tone + 1) * 127.5).astype(np.uint8).tobytes(), bits=8),
             _wav(np.repeat((tone * 32767).astype("<i2"), 2).tobytes(), channels=2)]
    try:
        from voicekit.testing.encode import EncoderUnavailable, encode_audio
    except ImportError:  # PyAV missing
        return seeds
    for codec, fmt in (("flac", "flac"), ("libmp3lame", "mp3"), ("libopus", "ogg"), ("aac", "adts"),
                       ("pcm_s16le", "aiff"), ("libvorbis", "ogg")):
        r = 48000 if codec == "libopus" else rate
        try:
            seeds.append(encode_audio(np.resize(tone, r // 4), r, codec, container_format=fmt))
        except EncoderUnavailable:  # an encoder this FFmpeg build lacks
            continue
    return seeds


_MAGIC = [b"RIFF", b"WAVE", b"fmt ", b"data", b"LIST", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"#!AMR\n",
          b"ftyp", b"moov", b"\x1aE\xdf\xa3", b"FORM", b"AIFF", b"OpusHead"]
_U32 = [0, 1, 2, 7, 8, 16, 44, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def mutate_bytes(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One hostile file: a seed cut, flipped, with header fields rewritten; or junk, or text."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2048))
    if kind == 1:
        text = "".join(rng.choice("RIFF? abc\n#!AMR♪é\t0123") for _ in range(rng.randrange(0, 300)))
        return rng.choice(_MAGIC) + text.encode()
    data = bytearray(rng.choice(seeds))
    if kind == 2:  # truncation only
        return bytes(data[: rng.randrange(0, len(data) + 1)])
    if kind in (3, 4) and data[:4] == b"RIFF":  # rewrite WAV header fields
        for _ in range(rng.randrange(1, 4)):
            offset = rng.choice([4, 16, 20, 22, 24, 28, 32, 34, 40])
            width = 2 if offset in (20, 22, 32, 34) else 4
            value = rng.choice(_U32) if rng.random() < 0.6 else rng.getrandbits(8 * width)
            data[offset : offset + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        if rng.random() < 0.5:
            data = data[: rng.randrange(0, len(data) + 1)]
        return bytes(data)
    for _ in range(rng.randrange(1, 12)):  # flips, inserted magic, duplicated spans
        if not data:
            break
        op = rng.randrange(4)
        pos = rng.randrange(len(data))
        if op == 0:
            data[pos] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(_MAGIC)
        elif op == 2:
            data[pos : pos + 4] = rng.choice(_U32).to_bytes(4, "little")
        else:
            end = min(len(data), pos + rng.randrange(1, 64))
            data[pos:pos] = data[pos:end] * rng.randrange(1, 4)
    if rng.random() < 0.3:
        data = data[: rng.randrange(0, len(data) + 1)]
    return bytes(data)


# ------------------------------------------------------------------------------------- protocol seeds

TASK_SERVER = [
    {"header": {"task_id": "t1", "event": "task-started", "attributes": {}}, "payload": {}},
    {"header": {"task_id": "t1", "event": "result-generated", "attributes": {}},
     "payload": {"output": {"sentence": {"begin_time": 0, "end_time": 1200, "text": "hello", "sentence_end": True,
                                         "words": [{"begin_time": 0, "end_time": 500, "text": "hello",
                                                    "punctuation": ""}]}},
                 "usage": {"duration": 1}}},
    {"header": {"task_id": "t1", "event": "task-finished", "attributes": {}}, "payload": {"output": {}}},
    {"header": {"task_id": "t1", "event": "task-failed", "error_code": "InvalidParameter",
                "error_message": "bad", "attributes": {}}, "payload": {}},
]
TASK_CLIENT = [
    {"header": {"action": "run-task", "task_id": "t1", "streaming": "duplex"},
     "payload": {"task_group": "audio", "task": "asr", "function": "recognition", "model": "fun-asr-realtime",
                 "parameters": {"format": "pcm", "sample_rate": 16000, "language_hints": ["en"]}, "input": {}}},
    {"header": {"action": "continue-task", "task_id": "t1", "streaming": "duplex"},
     "payload": {"input": {}}},
    {"header": {"action": "finish-task", "task_id": "t1", "streaming": "duplex"}, "payload": {"input": {}}},
]
RT_SERVER = [
    {"type": "session.created", "event_id": "e1",
     "session": {"id": "s1", "modalities": ["text", "audio"], "input_audio_format": "pcm16",
                 "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500}}},
    {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e2", "item_id": "i1",
     "content_index": 0, "transcript": "hello"},
    {"type": "conversation.item.input_audio_transcription.text", "event_id": "e2", "item_id": "i1",
     "content_index": 0, "text": "hel", "stash": "lo"},
    {"type": "response.audio.delta", "event_id": "e3", "response_id": "r1", "item_id": "i1", "output_index": 0,
     "content_index": 0, "delta": base64.b64encode(b"\0\0" * 8).decode()},
    {"type": "response.done", "event_id": "e4", "response": {"id": "r1", "status": "completed", "output": []}},
    {"type": "error", "event_id": "e5", "error": {"type": "invalid_request_error", "code": "x", "message": "m"}},
    {"type": "input_audio_buffer.speech_started", "event_id": "e6", "audio_start_ms": 100, "item_id": "i1"},
    {"type": "response.function_call_arguments.done", "event_id": "e7", "response_id": "r1", "item_id": "i2",
     "output_index": 0, "call_id": "c1", "name": "f", "arguments": "{}"},
]
RT_CLIENT = [
    {"type": "session.update", "event_id": "c1",
     "session": {"modalities": ["text", "audio"], "input_audio_format": "pcm16", "voice": "Chelsie",
                 "turn_detection": {"type": "server_vad", "threshold": 0.5},
                 "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}},
    {"type": "input_audio_buffer.append", "event_id": "c2", "audio": base64.b64encode(b"\0\0" * 8).decode()},
    {"type": "input_audio_buffer.commit", "event_id": "c3"},
    {"type": "response.create", "event_id": "c4", "response": {"modalities": ["text"]}},
    {"type": "conversation.item.create", "event_id": "c5",
     "item": {"type": "function_call_output", "call_id": "c1", "output": "ok"}},
    {"type": "session.finish", "event_id": "c6"},
]
FILES_TASK = [
    {"request_id": "r", "output": {"task_id": "t", "task_status": "SUCCEEDED",
                                   "results": [{"file_url": "http://x/a.wav", "subtask_status": "SUCCEEDED",
                                                "transcription_url": "http://x/r.json"}]}},
    {"request_id": "r", "output": {"task_id": "t", "task_status": "RUNNING"}},
    {"request_id": "r", "output": {"task_id": "t", "task_status": "FAILED", "code": "X", "message": "m"}},
]
FILES_RESULT = [
    {"file_url": "http://x/a.wav",
     "properties": {"audio_format": "wav", "channels": [0], "original_sampling_rate": 16000,
                    "original_duration_in_milliseconds": 1000},
     "transcripts": [{"channel_id": 0, "content_duration_in_milliseconds": 900, "text": "hi",
                      "sentences": [{"begin_time": 0, "end_time": 900, "text": "hi", "sentence_id": 1,
                                     "speaker_id": 0, "words": [{"begin_time": 0, "end_time": 400, "text": "hi",
                                                                 "punctuation": ""}]}]}]},
]
SERVE_CLIENT = [{"type": "hello", "version": 1, "sample_rate": 16000, "channels": 1, "format": "pcm_s16le",
                 "token": "secret-token", "client": "fuzz"},
                {"type": "end"}]
SERVE_AUDIO = [{"type": "end"}, {"type": "audio", "pcm": "AAAA"}]
SERVE_SERVER = [{"type": "ready", "session_id": "s1", "assistant": "robot"},
                {"type": "audio_format", "sample_rate": 22050, "channels": 1},
                {"type": "event", "event": {"event": "transcript", "text": "hi"}},
                {"type": "error", "code": "busy", "message": "m"}]

_ODD_VALUES: list[Any] = [None, True, 0, -1, 2**63, 1e308, float("nan"), float("inf"), "", "x" * 5000, "\ud800",
                          [], {}, [None], {"a": None}, "NaN", -0.0, 3.5, "\x00"]


def _mutate_value(rng: random.Random, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        op = rng.randrange(4)
        if op == 0:
            del value[key]
        elif op == 1:
            value[key] = copy.deepcopy(rng.choice(_ODD_VALUES))
        elif op == 2:
            value[key] = _mutate_value(rng, value[key], depth + 1)
        else:
            value[rng.choice(["type", "event", "header", "payload", "output", "session", "sentence", "x"])] = (
                copy.deepcopy(rng.choice(_ODD_VALUES)))
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        value[i] = (_mutate_value(rng, value[i], depth + 1) if rng.random() < 0.5
                    else copy.deepcopy(rng.choice(_ODD_VALUES)))
        return value
    return copy.deepcopy(rng.choice(_ODD_VALUES))


def mutate_json(rng: random.Random, seeds: list[dict[str, Any]]) -> str | bytes | Any:
    """One hostile message: a seed with fields dropped/retyped, deep nesting, cut text, or junk."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:
        depth = rng.choice([10, 100, 1000, 5000, 100_000])
        return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    msg = copy.deepcopy(rng.choice(seeds))
    for _ in range(rng.randrange(1, 5)):
        msg = _mutate_value(rng, msg)
    text = json.dumps(msg, allow_nan=True)
    if kind == 2:
        return text[: rng.randrange(0, len(text) + 1)]
    if kind == 3:
        return text.encode("utf-8", "surrogatepass")[: rng.randrange(0, len(text) + 1)] + rng.randbytes(3)
    if kind == 4:
        return msg  # already-parsed bodies, for the parsers that take them
    return text


# ---------------------------------------------------------------------------------------------- targets


class Target:
    def __init__(self, name: str, make: Callable[[random.Random], Any], run: Callable[[Any], None]) -> None:
        self.name = name
        self.make = make
        self.run = run


def _targets() -> dict[str, Target]:
    import trio

    from voicekit.audio import sources
    from voicekit.audio.sources import FileSource, PCMSource, open_source, probe

    seeds: list[bytes] = []
    folder = tempfile.mkdtemp(prefix="vk-fuzz-")

    def audio(rng: random.Random) -> bytes:
        if not seeds:
            seeds.extend(audio_seeds())
        return mutate_bytes(rng, seeds)

    def as_file(data: bytes) -> str:
        path = os.path.join(folder, "input.bin")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def run_probe(data: bytes) -> None:
        probe(as_file(data))

    def run_file_source(data: bytes) -> None:
        async def read() -> None:
            source = open_source(as_file(data), sample_rate=16000)
            try:
                async for _ in source.frames():
                    pass
            finally:
                await source.aclose()

        trio.run(read)

    def run_native_rate(data: bytes) -> None:
        async def read() -> None:
            source = FileSource(as_file(data), sample_rate=None, channels=2, start=0.05)
            async for _ in source.frames():
                pass

        trio.run(read)

    def run_wav_header(data: bytes) -> None:
        sources._wav_truncation(as_file(data), len(data))

    def pcm(rng: random.Random) -> tuple[bytes, int, int, int]:
        size = rng.randrange(0, 3000)
        return (rng.randbytes(size), rng.choice([8000, 16000, 44100, 48000]), rng.randrange(1, 4),
                rng.choice([1, 3, 7] if size < 200 else [333, 1024, 4096]))

    def run_pcm(args: tuple[bytes, int, int, int]) -> None:
        data, rate, channels, piece = args

        class Pieces(io.RawIOBase):
            pos = 0

            def readable(self) -> bool:
                return True

            def read(self, n: int = -1) -> bytes:
                chunk = data[self.pos : self.pos + min(n, piece)]
                self.pos += len(chunk)
                return chunk

        async def read() -> None:
            async for _ in PCMSource(Pieces(), input_rate=rate, input_channels=channels).frames():
                pass

        trio.run(read)

    targets = [Target("probe", audio, run_probe), Target("file_source", audio, run_file_source),
               Target("file_source_native_seek", audio, run_native_rate), Target("wav_header", audio, run_wav_header),
               Target("pcm_source", pcm, run_pcm)]

    def frames_of(seed_list: list[dict[str, Any]]) -> Callable[[random.Random], Any]:
        def make(rng: random.Random) -> Any:
            out = mutate_json(rng, seed_list)  # frames are text or bytes, as a WebSocket delivers them
            if isinstance(out, str):  # a text frame is valid UTF-8 (a lone surrogate only as a JSON escape)
                return out.encode("utf-8", "replace").decode("utf-8")
            return out if isinstance(out, bytes) else json.dumps(out, allow_nan=True)

        return make

    def bodies_of(seed_list: list[dict[str, Any]]) -> Callable[[random.Random], Any]:
        def make(rng: random.Random) -> Any:
            out = mutate_json(rng, seed_list)
            if isinstance(out, (str, bytes)):
                try:
                    return json.loads(out)
                except (ValueError, RecursionError):
                    return out
            return out

        return make

    from voicekit.serve import protocol as serve

    def serve_server(frame: Any) -> None:
        p = serve.ServerProtocol(token="secret-token")
        p.receive(json.dumps(SERVE_CLIENT[0]))  # a valid hello first: then audio, an end, or junk
        p.receive(frame)

    def serve_hello(frame: Any) -> None:
        serve.ServerProtocol(token="secret-token").receive(frame)

    targets += [Target("serve.decode_server", frames_of(SERVE_SERVER), serve.decode_server),
                Target("serve.ServerProtocol.hello", frames_of(SERVE_CLIENT), serve_hello),
                Target("serve.ServerProtocol.after_hello", frames_of(SERVE_CLIENT), serve_server)]
    try:
        from voicekit_dashscope.protocol import files, realtime, task
    except ImportError:  # the DashScope plugin is not installed
        return {t.name: t for t in targets}

    def task_server_side(frame: Any) -> None:
        p = task.ServerTaskProtocol()
        p.receive(json.dumps(TASK_CLIENT[0]))
        p.receive(frame)

    def task_client_side(frame: Any) -> None:
        p = task.ClientTaskProtocol()
        p.run_task(task.decode_client(json.dumps(TASK_CLIENT[0])))  # type: ignore[arg-type]
        p.receive(json.dumps(TASK_SERVER[0]).replace('"t1"', json.dumps(p.task_id)))
        p.receive(frame)

    targets += [Target("task.decode_server", frames_of(TASK_SERVER), task.decode_server),
                Target("task.decode_client", frames_of(TASK_CLIENT), task.decode_client),
                Target("task.ServerTaskProtocol", frames_of(TASK_CLIENT), task_server_side),
                Target("task.ClientTaskProtocol", frames_of(TASK_SERVER), task_client_side),
                Target("realtime.decode_server", frames_of(RT_SERVER), realtime.decode_server),
                Target("realtime.decode_client", frames_of(RT_CLIENT), realtime.decode_client),
                Target("files.parse_task", bodies_of(FILES_TASK), files.parse_task),
                Target("files.parse_result_file", bodies_of(FILES_RESULT), files.parse_result_file)]
    return {t.name: t for t in targets}


# ------------------------------------------------------------------------------------------ the worker


def _expected() -> tuple[type[BaseException], ...]:
    from voicekit.errors import VoicekitError

    return (VoicekitError,)


def worker(name: str, seed: int, start: int, count: int) -> int:
    """Run inputs ``start``..``start+count`` of one target; one line per input on stdout."""
    import structlog

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # quiet: warnings are expected
    try:
        import av.logging

        av.logging.set_level(None)
    except ImportError:
        pass
    target = _targets()[name]
    ok = _expected()
    out = sys.stdout
    for i in range(start, start + count):
        rng = random.Random(f"{name}:{seed}:{i}")
        value = target.make(rng)
        out.write(f"start {i}\n")
        out.flush()
        try:
            target.run(value)
            verdict = "ok"
        except ok:
            verdict = "refused"
        except BaseException as exc:  # the finding: anything that is not a typed voicekit error
            tb = traceback.format_exception(exc)
            where = next((ln.strip() for ln in reversed(tb) if ln.strip().startswith("File ")), "?")
            detail = f"{type(exc).__name__}: {str(exc)[:160]} at {where[:200]}"
            verdict = "crash " + detail.replace("\n", " ")
        out.write(f"done {i} {verdict}\n")
        out.flush()
    return 0


def fuzz(name: str, seed: int, start: int, count: int, hang_s: float) -> dict[str, Any]:
    """Drive the worker for one target, restarting it after a crash of the process or a hang."""
    stats: dict[str, Any] = {"ok": 0, "refused": 0, "crashes": [], "hangs": []}
    i = start
    end = start + count
    while i < end:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--seed", str(seed),
               "--start", str(i), "--count", str(end - i)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        current: int | None = None
        since = time.monotonic()
        pending = b""
        while True:
            if not sel.select(timeout=1.0):
                if current is not None and time.monotonic() - since > hang_s:
                    proc.kill()
                    proc.wait()
                    stats["hangs"].append(f"input {current}: no answer within {hang_s:g} s")
                    i = current + 1
                    break
                continue
            chunk = os.read(fd, 65536)  # raw reads: nothing sits unseen in a Python buffer
            if not chunk:  # the worker finished, or died (a crash in C code)
                code = proc.wait()
                if current is not None:
                    stats["crashes"].append(f"input {current}: worker died with status {code}")
                    i = current + 1
                elif code != 0 and i < end:
                    stats["crashes"].append(f"input {i}: worker exited with status {code}")
                    i += 1
                else:
                    i = end
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                word, num, *rest = raw.decode("utf-8", "replace").split(" ", 2)
                if word == "start":
                    current, since = int(num), time.monotonic()
                elif word == "done":
                    current = None
                    i = int(num) + 1
                    verdict = rest[0] if rest else "ok"
                    if verdict.startswith("crash"):
                        stats["crashes"].append(f"input {num}: {verdict[6:]}")
                    else:
                        stats[verdict] += 1
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000, help="inputs per target (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first input index (to reproduce a finding)")
    parser.add_argument("--target", action="append", help="only these targets (repeatable); default all")
    parser.add_argument("--hang-s", type=float, default=20.0, help="seconds before an input counts as a hang")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.seed, args.start, args.count)
    names = list(_targets())
    if args.list:
        print("\n".join(names))
        return 0
    chosen = args.target or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; --list shows them")
    total_crashes = total_hangs = 0
    t0 = time.monotonic()
    for name in chosen:
        t = time.monotonic()
        s = fuzz(name, args.seed, args.start, args.count, args.hang_s)
        total_crashes += len(s["crashes"])
        total_hangs += len(s["hangs"])
        print(f"{name:34s} inputs={args.count:6d} ok={s['ok']:6d} refused={s['refused']:6d} "
              f"crashes={len(s['crashes'])} hangs={len(s['hangs'])} ({time.monotonic() - t:.1f} s)", flush=True)
        for finding in s["crashes"][:20] + s["hangs"][:20]:
            print(f"    {finding}", flush=True)
    print(f"TOTAL targets={len(chosen)} inputs_per_target={args.count} seed={args.seed} "
          f"crashes={total_crashes} hangs={total_hangs} ({time.monotonic() - t0:.0f} s)")
    return 1 if total_crashes or total_hangs else 0


if __name__ == "__main__":
    sys.exit(main())
