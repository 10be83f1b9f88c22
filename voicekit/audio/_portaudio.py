"""PortAudio set-up: importing PyAudio with an install hint, starting and stopping PortAudio
(``Pa_Initialize`` and ``Pa_Terminate`` are not thread-safe: one lock), and keeping what its
back-ends (ALSA, JACK) print on fd 2 off the terminal."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, Final

from voicekit.errors import AudioError

#: Set to 1 to let PortAudio, ALSA and JACK print their diagnostics on stderr.
DEBUG_ENV: Final = "VOICEKIT_AUDIO_DEBUG"
INSTALL_HINT: Final = "install voicekit[audio] and apt portaudio19-dev"


def load_pyaudio() -> Any:
    """Import PyAudio, or raise :class:`AudioError` saying how to install it."""
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioError(
            f"PyAudio is not installed (needed for the microphone and the speaker): {INSTALL_HINT}; "
            "or use --input FILE / --output FILE.wav"
        ) from exc
    return pyaudio


PA_LOCK = threading.Lock()  # Pa_Initialize / Pa_Terminate are not thread-safe
_QUIET_LOCK = threading.RLock()  # one fd-2 redirection at a time (always taken after PA_LOCK)
_ALSA_HANDLER: Any = None


def _silence_alsa() -> None:
    """Route ALSA's own error printing to nowhere (voicekit raises clear errors instead)."""
    global _ALSA_HANDLER
    if _ALSA_HANDLER is not None or not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("asound")
    if name is None:
        return
    try:
        lib = ctypes.CDLL(name)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_char_p)
        _ALSA_HANDLER = proto(lambda *_args: None)
        lib.snd_lib_error_set_handler(_ALSA_HANDLER)
    except (OSError, AttributeError):  # an unusual libasound: keep its messages
        _ALSA_HANDLER = False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide what PortAudio's back-ends (ALSA, JACK) print on fd 2 while probing devices."""
    if os.environ.get(DEBUG_ENV):
        yield
        return
    with _QUIET_LOCK:
        _silence_alsa()
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def portaudio() -> Any:
    """A new PyAudio instance (``Pa_Initialize``; blocking: it probes every device)."""
    pyaudio = load_pyaudio()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never spawn a JACK server just to list it
    with PA_LOCK, quiet():
        try:
            return pyaudio.PyAudio()
        except OSError as exc:
            raise AudioError(f"PortAudio failed to start: {exc} — check the sound system "
                             "(ALSA/PulseAudio) or use --input FILE / --output FILE.wav") from exc


def terminate(pa: Any) -> None:
    with PA_LOCK:
        pa.terminate()
