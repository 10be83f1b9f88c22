"""The job logic every batch backend shares.

* **Inputs** are files, folders (searched recursively for audio files, hidden ones left out) and
  glob patterns (``'calls/**/*.wav'``, quoted so the shell leaves them alone).
* **Outputs** go to one folder (``-o``), one file per input: ``OUT/<name>.<format>``. Inputs
  found in a folder or by a glob keep their path below the folder (or below the glob's fixed
  part), so ``calls/2024/a.wav`` and ``calls/2025/a.wav`` do not collide. Every output is written
  to a temporary name and renamed when complete (:mod:`voicekit.outputs`), as soon as its file is
  done; a failed file's recognised part goes to ``<name>.partial.<format>``.
* **Resume.** An output is *complete* when it exists and is not older than its input: a rename
  is the only way an output comes to exist, so an output that exists is whole, and one at least
  as new as the recording was made from this recording. Such inputs are skipped; ``--overwrite``
  transcribes everything again. A job that was interrupted (Ctrl-C, a power cut, a lost node)
  is resumed by running the same command again.
* **Leftovers.** A driver killed outright (``kill -9``, a power cut) while it wrote an output can
  leave that output's temporary file (``.NAME.XXXXXXXX.part``) behind. A temporary file is never an
  output, so it never makes an input count as done; the next run of the job removes the ones of
  its outputs that are older than the run (a newer one may belong to a job running beside it).
"""

from __future__ import annotations

import argparse
import glob
import os
import socket
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from voicekit.errors import ConfigError, OutputError, TranscriptionFailed, VoicekitError, one_line
from voicekit.outputs import check_folder, partial_name, refuse_input, temp_target, write_atomic

#: File name endings searched for in folders (what FFmpeg decodes as audio, commonly).
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".webm", ".mp4",
                            ".wma", ".aif", ".aiff", ".amr", ".mka", ".caf", ".au", ".raw.wav"})


@attrs.frozen
class Input:
    """One recording, and its output path relative to the output folder (without the suffix)."""

    path: str
    rel: str


@attrs.frozen
class Item:
    index: int
    path: str
    target: str


@attrs.frozen
class Outcome:
    """What a worker made of one file (sent back to the driver, which writes the output)."""

    text: str | None = None  # the rendered transcript, when the file succeeded
    partial: str | None = None  # the rendered recognised part, when it failed part-way
    error: str | None = None  # one line, when it failed
    audio_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the worker process while it transcribed this file
    wall_s: float = 0.0
    worker: str = ""  # host:pid
    warnings: tuple[str, ...] = ()
    retryable: bool = False  # the service asked us to slow down (rate limit)


@attrs.define
class Summary:
    total: int = 0
    transcribed: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    workers: set[str] = attrs.Factory(set)

    def line(self) -> str:
        return (f"voicekit: batch: {self.total} input(s): {self.transcribed} transcribed, "
                f"{self.skipped} skipped (output complete), {self.failed} failed")


def _magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _audio_in(folder: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_SUFFIXES:
                found.append(os.path.join(root, name))
    return found


def _strip(rel: str) -> str:
    p = Path(rel)
    return str(p.with_suffix("")) if p.suffix else str(p)


def list_inputs(specs: Sequence[str]) -> list[Input]:
    """Files, folders and glob patterns → the recordings, in a stable order, each once."""
    out: list[Input] = []
    seen: set[str] = set()

    def add(path: str, rel: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(Input(path, _strip(rel)))

    for spec in specs:
        if os.path.isdir(spec):
            files = _audio_in(spec)
            if not files:
                raise ConfigError(f"folder {spec!r} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES)[:6])}, "
                                  "…) — name the files, or a glob such as 'folder/*.dat'")
            for f in files:
                add(f, os.path.relpath(f, spec))
        elif _magic(spec) and not os.path.exists(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise ConfigError(f"no file matches {spec!r} — check the pattern (quote it so the shell "
                                  "does not expand it)")
            base = _glob_base(spec)
            for m in matches:
                if os.path.isdir(m):
                    for f in _audio_in(m):
                        add(f, os.path.relpath(f, base))
                else:
                    add(m, os.path.relpath(m, base))
        else:
            add(spec, os.path.basename(spec))  # a missing file is reported as a failed input
    return out


def is_complete(target: str, source: str) -> bool:
    """An output that exists (so was renamed into place whole) and is not older than its input."""
    try:
        out = os.stat(target)
    except OSError:
        return False
    try:
        src = os.stat(source)
    except OSError:
        return True  # the recording is gone; its transcript is what is left
    return out.st_mtime_ns >= src.st_mtime_ns


def stale_parts(targets: Sequence[str], *, before: float) -> list[str]:
    """The temporary files (:class:`voicekit.outputs.AtomicFile` names them ``.NAME.XXXXXXXX.part``)
    of these outputs and of their partial results, last changed before ``before`` (a time.time())."""
    wanted: dict[str, set[str]] = {}
    for target in targets:
        for path in (target, partial_name(target)):
            wanted.setdefault(os.path.dirname(path) or ".", set()).add(os.path.basename(path))
    found: list[str] = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if temp_target(entry.name) not in names:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime < before:
                found.append(entry.path)
    return sorted(found)


def remove_stale_parts(targets: Sequence[str], *, before: float) -> int:
    """Remove what :func:`stale_parts` finds; how many were removed."""
    removed = 0
    for path in stale_parts(targets, before=before):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


@attrs.define
class Job:
    items: list[Item]
    fmt: str
    out_dir: str
    overwrite: bool = False

    def split(self) -> tuple[list[Item], list[Item]]:
        """(to do, already complete)."""
        todo: list[Item] = []
        done: list[Item] = []
        for item in self.items:
            (done if not self.overwrite and is_complete(item.target, item.path) else todo).append(item)
        return todo, done


def plan_job(specs: Sequence[str], out_dir: str, fmt: str, *, overwrite: bool = False) -> Job:
    """Resolve inputs and outputs and check them all before any work is done."""
    if out_dir in ("", "-"):
        raise OutputError("a batch job writes one file per input: give an output folder with -o FOLDER")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"-o {out_dir!r} is a file, but a batch job needs a folder — give a folder "
                          "(it is created if missing)")
    inputs = list_inputs(specs)
    if not inputs:
        raise ConfigError("no input files — name files, folders or glob patterns")
    if not os.path.exists(out_dir):
        try:
            os.makedirs(out_dir)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out_dir!r}: {exc.strerror} — pick a writable place") \
                from None
    check_folder(out_dir)
    paths = [i.path for i in inputs]
    items: list[Item] = []
    seen: dict[str, str] = {}
    for index, inp in enumerate(inputs):
        target = os.path.join(out_dir, f"{inp.rel}.{fmt}")
        if target in seen:
            raise OutputError(f"{seen[target]!r} and {inp.path!r} would both be written to {target!r} — "
                              "give their folder instead of the files, or transcribe them into different folders")
        seen[target] = inp.path
        refuse_input(target, paths, what="-o")
        refuse_input(partial_name(target), paths, what="-o (partial result)")
        items.append(Item(index, inp.path, target))
    for folder in sorted({os.path.dirname(i.target) for i in items}):
        os.makedirs(folder, exist_ok=True)
    return Job(items, fmt, out_dir, overwrite)


# -- the work on one file (in a worker, or in this process) -----------------------------------------

def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def throttled(exc: BaseException) -> bool:
    """The service asked to slow down: HTTP 429, or a ``Throttling…`` / rate-limit error code."""
    err = exc.error if isinstance(exc, TranscriptionFailed) else exc
    code = str(getattr(err, "code", "") or "")
    return getattr(err, "status", None) == 429 or code.startswith("Throttling") or code == "rate_limit_exceeded"


async def transcribe_file_async(asr: Any, vad: Any, path: str, *, fmt: str, language: str | None) -> Outcome:
    """Transcribe one file and render it; every failure becomes an :class:`Outcome` with an error."""
    from voicekit import transcribe
    from voicekit.audio.sources import FileSource, probe
    from voicekit.formats import render
    from voicekit.session.session import SessionConfig

    cpu0, wall0 = time.process_time(), time.perf_counter()
    warnings: list[str] = []
    audio_s = 0.0

    def done(**kw: Any) -> Outcome:
        return Outcome(audio_s=audio_s, cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0,
                       worker=_worker_name(), warnings=tuple(warnings), **kw)

    try:
        info = probe(path)
        audio_s = float(info.duration or 0.0)
        source = FileSource(path, sample_rate=16000, on_warning=warnings.append)
        segments = await transcribe(source, asr=asr, vad=vad, config=SessionConfig(language=language))
    except TranscriptionFailed as exc:
        partial = render(exc.segments, fmt, source=path) if exc.segments else None
        return done(partial=partial, error=f"{path}: {one_line(exc)}", retryable=throttled(exc))
    except VoicekitError as exc:
        return done(error=f"{path}: {one_line(exc)}", retryable=throttled(exc))
    except Exception as exc:  # a bug in a plugin must not take the other files down
        return done(error=f"{path}: internal error {type(exc).__name__}: {str(exc)[:200]}")
    return done(text=render(segments, fmt, source=path))


def transcribe_file(asr: Any, vad: Any, path: str, *, fmt: str, language: str | None) -> Outcome:
    import trio

    result: Outcome = trio.run(lambda: transcribe_file_async(asr, vad, path, fmt=fmt, language=language))
    return result


# -- the driver's side: outputs, progress, summary ---------------------------------------------------

def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Reporter:
    """Writes each output as its file finishes, shows the job's progress, counts the outcome."""

    def __init__(self, job: Job, *, todo: int, skipped: int, progress: bool, verbose: int) -> None:
        self.job = job
        self.summary = Summary(total=len(job.items), skipped=skipped)
        self.todo = todo
        self.progress = progress
        self.verbose = verbose
        self.start = time.monotonic()
        self._bar_shown = False
        self.out = sys.stdout  # kept: a backend may point sys.stdout elsewhere (Ray prints to it)

    def _err(self, line: str) -> None:
        self._clear()
        try:
            print(line, file=sys.stderr, flush=True)
        except (BrokenPipeError, ValueError):
            pass
        self.bar()

    def _clear(self) -> None:
        if self._bar_shown:
            sys.stderr.write("\r\033[K")
            self._bar_shown = False

    def bar(self) -> None:
        if not self.progress:
            return
        done = self.summary.transcribed + self.summary.failed
        pct = int(100 * done / self.todo) if self.todo else 100
        elapsed = time.monotonic() - self.start
        eta = f"  ETA {_clock(elapsed / done * (self.todo - done))}" if 0 < done < self.todo else ""
        fails = f"  {self.summary.failed} failed" if self.summary.failed else ""
        bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
        sys.stderr.write(f"\rbatch [{bar}] {done}/{self.todo} files{fails}  {_clock(elapsed)}{eta}")
        sys.stderr.flush()
        self._bar_shown = True

    def note(self, line: str) -> None:
        self._err(f"voicekit: batch: {line}")

    def record(self, item: Item, outcome: Outcome) -> None:
        for w in outcome.warnings:
            self._err(f"voicekit: warning: {item.path}: {w}")
        self.summary.cpu_s += outcome.cpu_s
        if outcome.worker:
            self.summary.workers.add(outcome.worker)
        if outcome.error is None and outcome.text is not None:
            write_atomic(item.target, outcome.text.encode("utf-8"), what="transcript")
            stale = partial_name(item.target)
            if os.path.exists(stale):
                os.unlink(stale)  # an earlier run's partial result is superseded
            self.summary.transcribed += 1
            self.summary.audio_s += outcome.audio_s
            if self.verbose:
                self._err(f"voicekit: batch: done {item.path} -> {item.target} ({outcome.audio_s:.1f} s audio in "
                          f"{outcome.wall_s:.1f} s, worker {outcome.worker})")
            self._clear()
            print(item.target, file=self.out, flush=True)  # the result: the path of each finished transcript
        else:
            self.summary.failed += 1
            kept = ""
            if outcome.partial:
                where = partial_name(item.target)
                write_atomic(where, outcome.partial.encode("utf-8"), what="transcript")
                kept = f"; what was recognised is in {where!r}"
            self._err(f"voicekit: error: {outcome.error}{kept}")
        self.bar()

    def fail(self, item: Item, message: str) -> None:
        self.record(item, Outcome(error=f"{item.path}: {message}"))

    def finish(self) -> int:
        self._clear()
        s = self.summary
        extra = ""
        if s.audio_s and self.verbose:
            wall = time.monotonic() - self.start
            extra = f" ({s.audio_s:.0f} s of audio in {wall:.0f} s, {len(s.workers)} worker(s))"
        print(s.line() + extra, file=sys.stderr, flush=True)
        return 1 if s.failed else 0


# -- the CLI entry ------------------------------------------------------------------------------------

def run_batch(args: argparse.Namespace) -> int:
    """``voicekit transcribe --cluster ...``: plan, skip what is complete, run on the chosen backend."""
    from voicekit.plugins.build import DEFAULT_ASR, DEFAULT_VAD, make_asr, parse_options

    cluster: str = args.cluster
    started = time.time()
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    job = plan_job(args.files, args.output, args.format, overwrite=args.overwrite)  # -o checked before work
    asr_name = args.asr or DEFAULT_ASR
    vad_name = args.vad or DEFAULT_VAD
    asr_options = parse_options(args.asr_option)
    asr = make_asr(asr_name, **asr_options)  # bad plugin names and options fail here, before any worker starts
    remote = getattr(asr.capabilities, "offline", True) is False
    todo, done = job.split()
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    reporter = Reporter(job, todo=len(todo), skipped=len(done), progress=show, verbose=args.verbose)
    if done:
        reporter.note(f"skipping {len(done)} input(s) whose output is complete (--overwrite to redo them)")
    leftovers = remove_stale_parts([i.target for i in job.items], before=started)
    if leftovers:
        reporter.note(f"removed {leftovers} temporary file(s) (.part) left by an interrupted run")
    if not todo:
        return reporter.finish()
    if remote:
        from voicekit.batch.local import run_concurrent

        if cluster not in ("none",):
            reporter.note(f"{asr_name} works in the cloud: no Ray workers; up to {args.concurrency or 4} "
                          "file(s) in flight from this process")
        run_concurrent(todo, reporter, asr=asr, vad_name=vad_name, fmt=job.fmt, language=args.language,
                       concurrency=args.concurrency or 4)
        return reporter.finish()
    if args.concurrency is not None:
        raise ConfigError(f"--concurrency is for cloud models; {asr_name} runs locally — use --workers N")
    if cluster == "none":
        from voicekit.batch.local import run_sequential

        run_sequential(todo, reporter, asr=asr, vad_name=vad_name, fmt=job.fmt, language=args.language)
        return reporter.finish()
    del asr  # each Ray worker builds its own
    from voicekit.batch.ray_backend import run_ray

    run_ray(todo, reporter, cluster=cluster, workers=args.workers, asr_name=asr_name, asr_options=asr_options,
            vad_name=vad_name, fmt=job.fmt, language=args.language)
    return reporter.finish()
