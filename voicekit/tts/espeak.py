"""Text to speech with the espeak-ng program (offline, many languages, robotic but instant).

The ``espeak-ng`` binary (Debian/Ubuntu: ``apt-get install espeak-ng``) writes a WAV stream on
its standard output as it speaks; we parse the RIFF header ourselves and hand the samples on in
~20 ms frames as they arrive, so playback can start before the whole reply is synthesized. The
text goes in on standard input (never on the command line), UTF-8, with SSML off, so any text is
spoken literally. If the consumer stops early or is cancelled, the process is killed and reaped.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from typing import Any, ClassVar, Final

import trio

from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.errors import ConfigError, TTSError
from voicekit.plugins.options import Option
from voicekit.tts.base import TTSCapabilities

#: Language codes of the voices espeak-ng 1.51 ships (``espeak-ng --voices``); see also
#: :meth:`EspeakTTS.list_voices` for what the installed binary really has.
ESPEAK_LANGUAGES: Final = (
    "af", "am", "an", "ar", "as", "az", "ba", "be", "bg", "bn", "bpy", "bs", "ca", "chr-US-Qaaa-x-west",
    "cmn", "cmn-latn-pinyin", "cs", "cv", "cy", "da", "de", "el", "en", "en-029", "en-gb",
    "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us", "en-us-nyc", "eo", "es",
    "es-419", "et", "eu", "fa", "fa-latn", "fi", "fr", "fr-be", "fr-ch", "fr-fr", "ga", "gd", "gn", "grc",
    "gu", "hak", "haw", "he", "hi", "hr", "ht", "hu", "hy", "hyw", "ia", "id", "io", "is", "it", "ja",
    "jbo", "ka", "kk", "kl", "kn", "ko", "kok", "ku", "ky", "la", "lb", "lfn", "lt", "ltg", "lv", "mi",
    "mk", "ml", "mr", "ms", "mt", "my", "nb", "nci", "ne", "nl", "nog", "om", "or", "pa", "pap", "piqd",
    "pl", "pt", "pt-br", "py", "qdb", "qu", "quc", "qya", "ro", "ru", "ru-lv", "sd", "shn", "si", "sjn",
    "sk", "sl", "smj", "sq", "sr", "sv", "sw", "ta", "te", "th", "tk", "tn", "tr", "tt", "ug", "uk", "ur",
    "uz", "vi", "vi-vn-x-central", "vi-vn-x-south", "yue", "zh",
)

#: ISO codes people pass that espeak-ng names differently.
_LANGUAGE_ALIASES: Final = {"zh": "cmn", "zh-cn": "cmn", "zh-hans": "cmn", "zh-tw": "cmn", "zh-hk": "yue",
                            "no": "nb", "en-uk": "en-gb", "pt-pt": "pt"}

#: Text bytes per espeak-ng process: small enough that writing it into the pipe never waits for
#: espeak-ng to drain its output (a pipe buffer holds 64 KiB on Linux).
SEGMENT_BYTES: Final = 8192
_READ_SIZE: Final = 65536
_INSTALL_HINT: Final = "install it with 'apt-get install espeak-ng' (or your system's package manager)"


def _segments(text: str, limit: int = SEGMENT_BYTES) -> Iterator[str]:
    """Cut long text into pieces of at most ``limit`` UTF-8 bytes, at sentence or word ends."""
    rest = text.strip()
    while rest:
        if len(rest.encode()) <= limit:
            yield rest
            return
        window = rest.encode()[:limit].decode(errors="ignore")
        cut = max(window.rfind(m) + len(m) for m in (". ", "! ", "? ", "\n", "; ", ", "))
        if cut < len(window) // 2:
            cut = window.rfind(" ") + 1
        if cut <= 0:
            cut = len(window)
        yield window[:cut].strip()
        rest = rest[cut:].strip()


def _parse_header(buf: bytes) -> tuple[int, int, int] | None:
    """(sample_rate, channels, offset of the first sample) once ``buf`` holds the whole header."""
    if len(buf) < 12:
        return None
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise TTSError("espeak-ng wrote something that is not a WAV stream — is the binary really espeak-ng?")
    pos, fmt = 12, None
    while pos + 8 <= len(buf):
        cid, size = buf[pos : pos + 4], struct.unpack_from("<I", buf, pos + 4)[0]
        if cid == b"fmt ":
            if pos + 8 + 16 > len(buf):
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", buf, pos + 8)
            if tag != 1 or bits != 8 * SAMPLE_WIDTH:
                raise TTSError(
                    f"espeak-ng wrote WAV format {tag} with {bits}-bit samples; expected 16-bit PCM"
                )
            fmt = (rate, channels)
        elif cid == b"data":
            if fmt is None:
                raise TTSError("espeak-ng's WAV stream has no format chunk before its data")
            return fmt[0], fmt[1], pos + 8
        pos += 8 + size + (size & 1)
    return None


class EspeakTTS:
    """The ``espeak`` TTS plugin.

    ``voice`` is an espeak-ng voice or language name (``en-us``, ``de``, ``fr-fr``, ``cmn``...);
    ``rate_wpm`` the speed in words per minute (80-450); ``pitch`` 0-99; ``amplitude`` 0-200
    (100 is espeak-ng's default); ``word_gap_ms`` extra pause between words. ``language`` passed
    to :meth:`synthesize` picks another voice for that call unless the configured voice already
    speaks it (``en`` keeps ``en-us``).
    """

    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(
        name="espeak", languages=ESPEAK_LANGUAGES, sample_rate=22050, streaming=True, offline=True,
        notes="formant synthesis via the espeak-ng program; instant, intelligible, robotic",
    )
    binary: ClassVar[str] = "espeak-ng"
    options: ClassVar[tuple[Option, ...]] = (
        Option("voice", "str", "en-us", "espeak-ng voice or language name (see 'espeak-ng --voices')"),
        Option("rate_wpm", "int", 175, "speed in words per minute", minimum=80, maximum=450),
        Option("pitch", "int", 50, "pitch 0-99", minimum=0, maximum=99),
        Option("amplitude", "int", 100, "loudness 0-200 (100 is espeak-ng's default)", minimum=0, maximum=200),
        Option("word_gap_ms", "int", 0, "extra pause between words, ms", minimum=0, maximum=1000),
        Option("chunk_ms", "int", 20, "length of the audio chunks handed to the player, ms", minimum=1,
               maximum=1000),
        Option("binary", "str", None, "espeak-ng executable name or path"),
    )

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50, *, amplitude: int = 100,
                 word_gap_ms: int = 0, chunk_ms: int = 20, binary: str | None = None, **kw: Any) -> None:
        if kw:
            raise ConfigError(
                f"EspeakTTS does not take {', '.join(sorted(kw))} — its options are voice, rate_wpm, pitch, "
                "amplitude, word_gap_ms, chunk_ms, binary"
            )
        if not isinstance(voice, str) or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", voice):
            raise ConfigError(f"espeak voice {voice!r} is not a voice name — see 'espeak-ng --voices'")
        for name, value, low, high in (("rate_wpm", rate_wpm, 80, 450), ("pitch", pitch, 0, 99),
                                       ("amplitude", amplitude, 0, 200),
                                       ("word_gap_ms", word_gap_ms, 0, 1000),
                                       ("chunk_ms", chunk_ms, 1, 1000)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"EspeakTTS {name} must be an integer from {low} to {high}, got {value!r}")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        self.amplitude = amplitude
        self.word_gap_ms = word_gap_ms
        self.chunk_ms = chunk_ms
        self._binary = binary

    @property
    def program(self) -> str:
        """The espeak-ng executable name or path (the ``binary`` option, else the class default)."""
        return self._binary or type(self).binary

    def __repr__(self) -> str:
        return f"EspeakTTS(voice={self.voice!r}, rate_wpm={self.rate_wpm}, pitch={self.pitch})"

    def voice_for(self, language: str | None) -> str:
        """The espeak-ng voice used for ``language`` (``None``: the configured voice)."""
        if not language:
            return self.voice
        lang = language.strip().lower().replace("_", "-")
        own = self.voice.lower()
        if own == lang or own.split("-")[0] == lang:
            return self.voice
        return _LANGUAGE_ALIASES.get(lang, lang)

    def _command(self, voice: str) -> list[str]:
        exe = shutil.which(self.program)
        if exe is None:
            raise TTSError(f"the {self.program!r} program was not found — {_INSTALL_HINT}")
        cmd = [exe, "--stdout", "--stdin", "-b", "1", "-v", voice, "-s", str(self.rate_wpm),
               "-p", str(self.pitch), "-a", str(self.amplitude)]
        if self.word_gap_ms:
            cmd += ["-g", str(max(1, round(self.word_gap_ms / 10)))]  # espeak-ng counts units of 10 ms
        return cmd

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncGenerator[AudioFrame, None]:
        """Yield ~``chunk_ms`` frames of ``text`` spoken, as espeak-ng produces them."""
        if not text or not text.strip():
            return
        cmd = self._command(self.voice_for(language))
        emitted = 0  # samples per channel, across segments
        for segment in _segments(text):
            async with aclosing(self._speak(cmd, segment, emitted)) as frames:
                async for frame in frames:
                    emitted += frame.samples
                    yield frame

    async def _speak(self, cmd: list[str], text: str, offset: int) -> AsyncGenerator[AudioFrame, None]:
        try:
            proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise TTSError(f"the {self.program!r} program was not found — {_INSTALL_HINT}") from None
        except PermissionError:
            raise TTSError(f"the {self.program!r} program cannot be run (permission denied) — "
                           "reinstall espeak-ng") from None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            await proc.stdin.send_all(text.encode())
            await proc.stdin.aclose()
            buf = b""
            header: tuple[int, int, int] | None = None
            rate, channels, pos = 0, 1, offset
            chunk_bytes = 0
            while True:
                data = await proc.stdout.receive_some(_READ_SIZE)
                buf += data
                if header is None:
                    header = _parse_header(buf)
                    if header is None:
                        if not data:
                            break
                        continue
                    rate, channels, start = header
                    buf = buf[start:]
                    chunk_bytes = max(1, rate * self.chunk_ms // 1000) * SAMPLE_WIDTH * channels
                # whole frames while the stream runs; at the end, every whole sample that is left
                step = chunk_bytes if data else SAMPLE_WIDTH * channels
                usable = len(buf) - len(buf) % step
                for i in range(0, usable, chunk_bytes):
                    frame = AudioFrame(buf[i : i + chunk_bytes], rate, channels, pos / rate)
                    pos += frame.samples
                    yield frame
                buf = buf[usable:]
                if not data:
                    break
            err = b""
            while chunk := await proc.stderr.receive_some(_READ_SIZE):
                err += chunk
            code = await proc.wait()
            if code != 0:
                lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
                detail = lines[-1].removeprefix("Error: ").rstrip(".") if lines else "no message"
                raise TTSError(
                    f"espeak-ng failed (exit {code}, voice {cmd[cmd.index('-v') + 1]!r}): {detail} — "
                    "check the voice name against 'espeak-ng --voices'"
                )
            if header is None:
                raise TTSError("espeak-ng exited without writing a WAV header — reinstall espeak-ng")
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    await pipe.aclose()
                await proc.wait()

    @classmethod
    async def list_voices(cls) -> list[str]:
        """Language names of the voices the installed espeak-ng has (runs ``espeak-ng --voices``)."""
        exe = shutil.which(cls.binary)
        if exe is None:
            raise TTSError(f"the {cls.binary!r} program was not found — {_INSTALL_HINT}")
        done = await trio.run_process([exe, "--voices"], capture_stdout=True, capture_stderr=True,
                                      check=False)
        if done.returncode != 0:
            raise TTSError(f"'espeak-ng --voices' failed (exit {done.returncode}) — reinstall espeak-ng")
        lines = done.stdout.decode(errors="replace").splitlines()[1:]
        return sorted({ln.split()[1] for ln in lines if len(ln.split()) > 1})
