"""Real human speech for tests, demos and benchmarks, fetched once and cached.

The pocketsphinx 5.1.1 source distribution on PyPI carries LibriVox clips (public domain) with
transcripts and short command recordings (BSD licence) under ``test/data``. We fetch it with pip
from the package registry, unpack only ``test/data`` into the cache, and turn the headerless
``.raw`` recordings (16 kHz, mono, int16) into WAV files next to them.

Cache: ``$VOICEKIT_CACHE`` or ``~/.cache/voicekit``. Command line::

    python -m voicekit.testing.data            # fetch, print the data folder
    python -m voicekit.testing.data goforward  # fetch, print the path of goforward.wav
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import wave
from pathlib import Path

SDIST = "pocketsphinx==5.1.1"
_PREFIX = "pocketsphinx-5.1.1/test/data/"


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEKIT_CACHE", Path.home() / ".cache" / "voicekit"))


def pocketsphinx_data() -> Path:
    """Folder holding the sdist's ``test/data`` (fetched on first use)."""
    dest = cache_dir() / "pocketsphinx-5.1.1-data"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             SDIST, "-d", tmp],
            check=True, stdout=subprocess.DEVNULL,
        )
        (archive,) = Path(tmp).glob("pocketsphinx-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(_PREFIX):
                    rel = member.name[len(_PREFIX):]
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    target.write_bytes(src.read())
    for raw in list(dest.glob("*.raw")) + list(dest.glob("vad/*.raw")):
        with wave.open(str(raw.with_suffix(".wav")), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(raw.read_bytes())
    (dest / ".complete").write_text("ok\n")
    return dest


def librivox_clips() -> list[tuple[Path, str]]:
    """(wav path, reference transcript) for the five LibriVox clips."""
    d = pocketsphinx_data() / "librivox"
    out = []
    for line in (d / "transcription").read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        text, _, fileid = line.rpartition("(")
        text = text.replace("<s>", "").replace("</s>", "").strip()
        out.append((d / (fileid.rstrip(")").strip() + ".wav"), text))
    return out


def speech(name: str) -> Path:
    """Path of one recording, e.g. ``goforward`` (go forward ten meters), ``numbers``, ``something``."""
    d = pocketsphinx_data()
    for candidate in (d / f"{name}.wav", d / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no recording named {name!r} in {d}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(speech(args[0]) if args else pocketsphinx_data())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
