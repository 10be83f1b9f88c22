"""What the ``voicekit`` subcommands do (imported only when a command runs)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import trio

from voicekit import events as ev
from voicekit.audio.echo import EchoGuard, make_echo_guard
from voicekit.audio.sinks import AudioSink, NullSink, WavFileSink
from voicekit.audio.sources import AudioSource, open_source
from voicekit.errors import AudioError, ConfigError, PluginError, VoicekitError, first_error, one_line, sole_error
from voicekit.formats import render
from voicekit.logging import configure
from voicekit.outputs import OutputError, check_folder, check_target, partial_name, refuse_input, write_atomic
from voicekit.plugins.build import (
    DEFAULT_ASR,
    DEFAULT_TTS,
    DEFAULT_VAD,
    load_assistant,
    make_asr,
    make_tts,
    make_vad,
    parse_options,
)
from voicekit.plugins.registry import list_plugins
from voicekit.session.interruption import make_policy
from voicekit.session.session import Session, SessionConfig
from voicekit.vad.endpointer import EndpointerConfig


def _log_level(verbose: int) -> str:
    # by default the printed events already show warnings and errors: keep stderr for the final line
    return {0: "critical", 1: "info"}.get(verbose, "debug")


def _trio_run(fn: Any, *args: Any) -> Any:
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        raise (first_error(group, VoicekitError) or sole_error(group)) from None


def _warn(message: str) -> None:
    """A warning about the input, shown at every verbosity (results stay on stdout)."""
    try:
        print(f"voicekit: warning: {message}", file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # stderr is gone: nothing to tell
        pass


def _is_stream(path: str) -> bool:
    """A named pipe, /dev/stdin or <(...): read once, never probed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _source(spec: str, *, realtime: bool) -> AudioSource:
    if spec == "mic":
        try:
            from voicekit.audio.device import MicrophoneSource
        except ImportError as exc:
            raise AudioError(
                "microphone input needs PyAudio: install 'voicekit[audio]' (and apt portaudio19-dev); "
                "or pass --input FILE") from exc
        return MicrophoneSource()
    if spec == "-":
        return open_source(spec, sample_rate=16000, realtime=realtime)
    if not _is_stream(spec):
        from voicekit.audio.sources import probe

        probe(spec)  # a missing, empty or non-audio file fails here with one clear line
    return open_source(spec, sample_rate=16000, realtime=realtime, on_warning=_warn)


def _sink(spec: str, rate: int) -> AudioSink | None:
    if spec == "none":
        return NullSink(rate)
    if spec == "speaker":
        try:
            from voicekit.audio.device import SpeakerSink
        except ImportError as exc:
            raise AudioError(
                "speaker output needs PyAudio: install 'voicekit[audio]' (and apt portaudio19-dev); "
                "or pass --output reply.wav or --output none") from exc
        return SpeakerSink(rate)
    if not spec.lower().endswith(".wav"):
        raise ConfigError(f"--output {spec!r}: give 'speaker', 'none' or a path ending in .wav")
    return WavFileSink(spec, rate)


def _echo_guard(name: str, speaker_and_mic: bool) -> EchoGuard | None:
    if name != "auto":
        return make_echo_guard(name)
    # the gate is the default: in our room simulations it never let the assistant interrupt itself
    # and always let a user speaking over the reply through; see docs/echo.md for the canceller
    return make_echo_guard("gate") if speaker_and_mic else None


def run(args: argparse.Namespace) -> int:
    from voicekit.cli.output import Printer

    configure(_log_level(args.verbose))
    if args.output not in ("speaker", "none") and args.input not in ("mic", "-"):
        refuse_input(args.output, [args.input], what="--output")  # before anything is opened
    assistant = load_assistant(args.assistant)
    asr_name = args.asr or DEFAULT_ASR
    vad_name = args.vad or DEFAULT_VAD
    asr = make_asr(asr_name, **parse_options(args.asr_option))
    vad_opts = {"sample_rate": 16000, **parse_options(args.vad_option)}
    vad = make_vad(vad_name, **vad_opts)
    tts_name = None if args.tts == "none" else (args.tts or DEFAULT_TTS)
    tts = make_tts(tts_name, **parse_options(args.tts_option)) if tts_name else None
    live = args.input == "mic"
    source = _source(args.input, realtime=args.realtime)
    sink = _sink(args.output, tts.capabilities.sample_rate if tts else 16000)
    policy = make_policy(args.interrupt, **({"min_speech_ms": args.min_interrupt_ms}
                                            if args.interrupt == "vad" else {}))
    config = SessionConfig(endpointer=EndpointerConfig(end_silence_ms=args.end_silence_ms),
                           realtime=live or args.realtime, use_grammar=args.grammar,
                           audio_policy="drop_oldest" if live else "block",
                           echo=_echo_guard(args.echo, live and args.output == "speaker"))
    printer = Printer(as_json=args.json, assistant=assistant.name)
    session = Session(source, asr=asr, vad=vad, assistant=assistant, tts=tts, sink=sink,
                      interruption=policy, config=config,
                      names={"asr": asr_name, "vad": vad_name, "tts": tts_name or "none"})
    errors: list[ev.Error] = []

    async def main() -> int:
        ok = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.run)
                async for event in session.events():
                    printer(event)
                    if isinstance(event, ev.Error):
                        errors.append(event)
            ok = True
        except KeyboardInterrupt:
            ok = True  # Ctrl-C is how a microphone session ends: keep what was recorded
            raise
        finally:
            if isinstance(sink, WavFileSink) and not ok:
                sink.discard()  # a failed run leaves no half-written reply file
            elif sink is not None:
                await sink.aclose()
        if isinstance(sink, WavFileSink) and not args.json:
            print(f"(reply audio written to {args.output})", file=sys.stderr)
        return 0

    code: int = _trio_run(main)
    return code


class _Bar:
    def __init__(self, name: str, duration: float | None, enabled: bool) -> None:
        self.name = name
        self.duration = duration
        self.enabled = enabled
        self._last = -1

    def __call__(self, position: float) -> None:
        if not self.enabled:
            return
        if self.duration:
            pct = min(100, int(100 * position / self.duration))
            if pct == self._last:
                return
            self._last = pct
            bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
            sys.stderr.write(f"\r{self.name} [{bar}] {pct:3d}%")
        else:
            sys.stderr.write(f"\r{self.name} {position:8.1f} s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _plan_outputs(files: list[str], output: str, fmt: str) -> list[str] | None:
    """Where each input's transcript goes (None: stdout), checked before any work is done."""
    if output == "-":
        return None
    many = len(files) > 1
    if many or os.path.isdir(output) or output.endswith(("/", os.sep)):
        if os.path.exists(output) and not os.path.isdir(output):
            raise OutputError(f"-o {output!r} is a file, but {len(files)} inputs need a folder — "
                              "give a folder (it is created if missing) or one input")
        if not os.path.exists(output) and Path(output).suffix and not output.endswith(("/", os.sep)):
            raise OutputError(f"-o {output!r} looks like a file name, but {len(files)} inputs need a folder — "
                              f"give a folder, e.g. -o {Path(output).stem}/")
        if not os.path.exists(output):
            try:
                os.makedirs(output)
            except OSError as exc:
                raise OutputError(f"cannot create output folder {output!r}: {exc.strerror} — "
                                  "pick a writable place") from None
        check_folder(output)
        targets = [os.path.join(output, Path(path).stem + "." + fmt) for path in files]
        seen: dict[str, str] = {}
        for path, target in zip(files, targets, strict=True):
            if target in seen:
                raise OutputError(f"{seen[target]!r} and {path!r} would both be written to {target!r} — "
                                  "transcribe them into different folders")
            seen[target] = path
    else:
        check_target(output)
        targets = [output]
    for target in targets:
        refuse_input(target, files, what="-o")
        refuse_input(partial_name(target), files, what="-o (partial result)")
    return targets


def transcribe(args: argparse.Namespace) -> int:
    from voicekit import TranscriptionFailed
    from voicekit import transcribe as run_transcribe
    from voicekit.audio.sources import FileSource, probe

    configure(_log_level(args.verbose))
    if getattr(args, "cluster", None) is not None:
        from voicekit.batch import run_batch  # Ray is imported only if the job uses it

        return run_batch(args)
    for flag in ("workers", "concurrency", "overwrite"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag} is for batch jobs: add --cluster (auto, local, ray://HOST:PORT or none)")
    files: list[str] = list(args.files)
    targets = _plan_outputs(files, args.output, args.format)  # a bad -o fails here, not after the work
    asr_name = args.asr or DEFAULT_ASR
    asr = make_asr(asr_name, **parse_options(args.asr_option))
    vad = make_vad(args.vad or DEFAULT_VAD, sample_rate=16000)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    many = len(files) > 1
    failures = 0

    def emit(path: str, segments: list[Any], target: str | None, *, partial: bool) -> None:
        text = render(segments, args.format, source=str(path))
        if target is not None:
            write_atomic(target, text.encode("utf-8"), what="transcript")
            return
        if many and args.format == "txt":
            sys.stdout.write(f"== {path}" + (" (incomplete)" if partial else "") + "\n")
        sys.stdout.write(text)
        sys.stdout.flush()

    for index, path in enumerate(files):
        target = targets[index] if targets is not None else None
        bar = _Bar(Path(path).name, None, show)
        try:
            info = None if _is_stream(path) else probe(path)  # a bad file fails here, before any work
            source = FileSource(path, sample_rate=16000, on_warning=_warn)
            bar.duration = info.duration if info is not None else None
            segments = _trio_run(_transcribe_one, run_transcribe, source, asr, vad, bar,
                                 SessionConfig(language=args.language))
            bar.done()
        except TranscriptionFailed as exc:
            bar.done()
            failures += 1
            kept = ""
            if exc.segments:
                where = partial_name(target) if target is not None else None
                emit(path, exc.segments, where, partial=True)
                kept = (f"; the {len(exc.segments)} segment(s) recognised up to {exc.recognised_until:.1f} s "
                        + (f"are in {where!r}" if where else "are printed above"))
            print(f"voicekit: error: {path}: {one_line(exc)}{kept}", file=sys.stderr)
            if not isinstance(exc.error, AudioError):
                rest = len(files) - index - 1
                if rest:
                    print(f"voicekit: error: skipped {rest} remaining file(s) after that error", file=sys.stderr)
                return 1
            continue
        except AudioError as exc:
            bar.done()
            print(f"voicekit: error: {one_line(exc)}", file=sys.stderr)
            failures += 1
            continue
        emit(path, segments, target, partial=False)
    return 1 if failures else 0


async def _transcribe_one(fn: Any, source: Any, asr: Any, vad: Any, bar: _Bar, config: SessionConfig) -> Any:
    return await fn(source, asr=asr, vad=vad, config=config, progress=bar)


def plugins(args: argparse.Namespace) -> int:
    import attrs

    if getattr(args, "name", None):
        from voicekit.plugins.options import show_plugin

        return show_plugin(args.name, as_json=args.json)
    infos = list_plugins()
    if args.json:
        rows = []
        for info in infos:
            caps = info.capabilities
            rows.append({"group": info.group, "name": info.name, "distribution": info.distribution,
                         "target": info.target, "error": info.error,
                         "capabilities": attrs.asdict(caps) if attrs.has(type(caps)) else None})
        print(json.dumps(rows, indent=2, default=str))
        return 0
    group = None
    for info in infos:
        if info.group != group:
            group = info.group
            print(f"{group}:")
        if info.error:
            print(f"  {info.name:28s} BROKEN: {info.error}")
            continue
        caps = info.capabilities
        summary = _summary(caps) if caps is not None else (getattr(info.obj, "description", "") or info.target)
        print(f"  {info.name:28s} {summary}")
    if not infos:
        raise PluginError("no plugins installed — reinstall voicekit")
    return 0


def _summary(caps: Any) -> str:
    parts: list[str] = []
    for key in ("mode", "api"):
        if hasattr(caps, key):
            parts.append(str(getattr(caps, key)))
    if getattr(caps, "languages", None):
        langs = caps.languages
        parts.append("lang " + ",".join(langs[:6]) + ("…" if len(langs) > 6 else ""))
    flags = [k for k in ("hotwords", "prompt_context", "grammar", "emotion", "diarization", "word_timestamps")
             if getattr(caps, k, False)]
    if flags:
        parts.append("+" + " +".join(flags))
    if getattr(caps, "sample_rates", None):
        parts.append("rates " + ",".join(str(r) for r in caps.sample_rates))
    if getattr(caps, "frame_ms", None):
        parts.append("frames " + ",".join(f"{m}ms" for m in caps.frame_ms))
    if getattr(caps, "regions", None):
        parts.append("regions " + ",".join(caps.regions))
    if hasattr(caps, "offline"):
        parts.append("offline" if caps.offline else "cloud")
    return "; ".join(parts)


# -- voicekit run --agent: a realtime model hears, answers and speaks -----------------------------

def run_agent(args: argparse.Namespace) -> int:
    """``voicekit run [ASSISTANT] --agent MODEL``: talk to a ``voicekit.agents`` plugin.

    The agent replaces ASR, assistant matching and TTS: it gets the audio and gives back reply
    audio and events. The assistant (optional) lends its intents as the agent's tools. A file
    input is always paced like a microphone: a realtime model converses in real time.
    """
    from voicekit.cli.agent import agent_setup
    from voicekit.cli.output import Printer

    configure(_log_level(args.verbose))
    if args.grammar:
        raise ConfigError("--grammar has no effect with --agent; the assistant's intents become the agent's tools")
    if args.output not in ("speaker", "none") and args.input not in ("mic", "-"):
        refuse_input(args.output, [args.input], what="--output")
    factory, options, assistant = agent_setup(args)
    agent = factory(assistant=assistant, **options)
    source = _source(args.input, realtime=True)
    rate = int(getattr(agent, "sample_rate", 24000))
    sink = _sink(args.output, rate)
    assert sink is not None
    name = assistant.name if assistant is not None else args.agent
    printer = Printer(as_json=args.json, assistant=name)

    def show(event: ev.Event) -> None:
        # the agent streams its reply word by word: print it whole when it ends (JSON keeps every event)
        if args.json:
            printer(event)
        elif isinstance(event, ev.ReplyFinished):
            printer(ev.ReplyText(t=event.t, turn_id=event.turn_id, text=event.text))
        elif isinstance(event, ev.ReplyInterrupted):
            printer(ev.ReplyText(t=event.t, turn_id=event.turn_id, text=event.heard_text + " …"))
            printer(event)
        elif not isinstance(event, ev.ReplyText):
            printer(event)

    async def main() -> int:
        ok = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(agent.run, source, sink)
                async for event in agent.events:
                    show(event)
            ok = True
        except KeyboardInterrupt:
            ok = True
            raise
        finally:
            with trio.CancelScope(shield=True):
                await source.aclose()
                if isinstance(sink, WavFileSink) and not ok:
                    sink.discard()
                else:
                    await sink.aclose()
        if isinstance(sink, WavFileSink) and not args.json:
            print(f"(reply audio written to {args.output})", file=sys.stderr)
        return 0

    code: int = _trio_run(main)
    return code
