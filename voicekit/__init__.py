"""voicekit: voice assistants and transcription on trio.

What an application uses is importable from here (the list is ``voicekit.__all__``)::

    import voicekit
    from voicekit import Assistant, Session, SessionConfig, events, make_asr, make_vad

Names are loaded on first use, so ``import voicekit`` stays cheap. Where the rest lives:

* ``voicekit.session`` — the live pipeline and barge-in policies
* ``voicekit.handlers`` — assistants, intents, turns and replies; the :class:`Handler` type
* ``voicekit.events`` — the frozen, timestamped events a session emits
* ``voicekit.audio`` — audio frames, file / stream / device sources, sinks, resampling, echo guards
* ``voicekit.vad``, ``voicekit.asr``, ``voicekit.tts`` — the plugin APIs (and the webrtc VAD)
* ``voicekit.plugins`` — discovery by entry points, and building plugins by name
* ``voicekit.errors`` — the exception tree, and helpers that read exception groups
* ``voicekit.testing`` — deterministic audio, fakes and timelines for tests on trio's virtual clock
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "ASRConfig",
    "ASREngine",
    "ASRError",
    "Assistant",
    "AudioError",
    "AudioFrame",
    "AudioSink",
    "AudioSource",
    "ConfigError",
    "DeviceNotFoundError",
    "EmptyAudioError",
    "Event",
    "FileSource",
    "Handler",
    "HandlerError",
    "InterruptionPolicy",
    "MemorySink",
    "MicrophoneSource",
    "NeverInterrupt",
    "NoEngineError",
    "NullSink",
    "OutputError",
    "PCMSource",
    "PluginError",
    "ProtocolError",
    "Reply",
    "Session",
    "SessionConfig",
    "SpeakerSink",
    "TTSEngine",
    "TTSError",
    "TranscriptResult",
    "TranscriptionFailed",
    "Turn",
    "UnsupportedAudioError",
    "VADBackend",
    "VADInterruption",
    "VoicekitError",
    "WavFileSink",
    "Word",
    "__version__",
    "events",
    "load_assistant",
    "make_asr",
    "make_tts",
    "make_vad",
    "open_session",
    "open_source",
    "probe",
    "transcribe",
]

# Where each name lives. Type checkers read the imports below; at run time a name's module is
# imported on first use (voicekit._lazy). tests/project/test_public_api.py checks the two agree.
_EXPORTS = {
    # sessions
    "Session": "voicekit.session.session",
    "SessionConfig": "voicekit.session.session",
    "open_session": "voicekit.session.session",
    "InterruptionPolicy": "voicekit.session.interruption",
    "NeverInterrupt": "voicekit.session.interruption",
    "VADInterruption": "voicekit.session.interruption",
    # assistants
    "Assistant": "voicekit.handlers.assistant",
    "Reply": "voicekit.handlers.assistant",
    "Turn": "voicekit.handlers.assistant",
    "Handler": "voicekit.handlers.protocol",
    # events: the module, and the base class of every event
    "events": "voicekit.events",
    "Event": "voicekit.events",
    # plugins by name, and their APIs
    "make_asr": "voicekit.plugins.build",
    "make_vad": "voicekit.plugins.build",
    "make_tts": "voicekit.plugins.build",
    "load_assistant": "voicekit.plugins.build",
    "ASRConfig": "voicekit.asr.base",
    "ASREngine": "voicekit.asr.base",
    "TranscriptResult": "voicekit.asr.base",
    "Word": "voicekit.asr.base",
    "VADBackend": "voicekit.vad.base",
    "TTSEngine": "voicekit.tts.base",
    # recorded audio
    "transcribe": "voicekit._transcribe",
    # audio in and out
    "AudioFrame": "voicekit.audio.frame",
    "AudioSource": "voicekit.audio.sources",
    "FileSource": "voicekit.audio.sources",
    "PCMSource": "voicekit.audio.sources",
    "open_source": "voicekit.audio.sources",
    "probe": "voicekit.audio.sources",
    "AudioSink": "voicekit.audio.sinks",
    "MemorySink": "voicekit.audio.sinks",
    "NullSink": "voicekit.audio.sinks",
    "WavFileSink": "voicekit.audio.sinks",
    "MicrophoneSource": "voicekit.audio.device",
    "SpeakerSink": "voicekit.audio.device",
    # errors
    "VoicekitError": "voicekit.errors",
    "AudioError": "voicekit.errors",
    "UnsupportedAudioError": "voicekit.errors",
    "EmptyAudioError": "voicekit.errors",
    "DeviceNotFoundError": "voicekit.errors",
    "ConfigError": "voicekit.errors",
    "OutputError": "voicekit.errors",
    "NoEngineError": "voicekit.errors",
    "PluginError": "voicekit.errors",
    "ProtocolError": "voicekit.errors",
    "ASRError": "voicekit.errors",
    "TTSError": "voicekit.errors",
    "HandlerError": "voicekit.errors",
    "TranscriptionFailed": "voicekit.errors",
}

if TYPE_CHECKING:
    from voicekit import events as events
    from voicekit._transcribe import transcribe as transcribe
    from voicekit.asr.base import ASRConfig as ASRConfig
    from voicekit.asr.base import ASREngine as ASREngine
    from voicekit.asr.base import TranscriptResult as TranscriptResult
    from voicekit.asr.base import Word as Word
    from voicekit.audio.device import MicrophoneSource as MicrophoneSource
    from voicekit.audio.device import SpeakerSink as SpeakerSink
    from voicekit.audio.frame import AudioFrame as AudioFrame
    from voicekit.audio.sinks import AudioSink as AudioSink
    from voicekit.audio.sinks import MemorySink as MemorySink
    from voicekit.audio.sinks import NullSink as NullSink
    from voicekit.audio.sinks import WavFileSink as WavFileSink
    from voicekit.audio.sources import AudioSource as AudioSource
    from voicekit.audio.sources import FileSource as FileSource
    from voicekit.audio.sources import PCMSource as PCMSource
    from voicekit.audio.sources import open_source as open_source
    from voicekit.audio.sources import probe as probe
    from voicekit.errors import ASRError as ASRError
    from voicekit.errors import AudioError as AudioError
    from voicekit.errors import ConfigError as ConfigError
    from voicekit.errors import DeviceNotFoundError as DeviceNotFoundError
    from voicekit.errors import EmptyAudioError as EmptyAudioError
    from voicekit.errors import HandlerError as HandlerError
    from voicekit.errors import NoEngineError as NoEngineError
    from voicekit.errors import OutputError as OutputError
    from voicekit.errors import PluginError as PluginError
    from voicekit.errors import ProtocolError as ProtocolError
    from voicekit.errors import TranscriptionFailed as TranscriptionFailed
    from voicekit.errors import TTSError as TTSError
    from voicekit.errors import UnsupportedAudioError as UnsupportedAudioError
    from voicekit.errors import VoicekitError as VoicekitError
    from voicekit.events import Event as Event
    from voicekit.handlers.assistant import Assistant as Assistant
    from voicekit.handlers.assistant import Reply as Reply
    from voicekit.handlers.assistant import Turn as Turn
    from voicekit.handlers.protocol import Handler as Handler
    from voicekit.plugins.build import load_assistant as load_assistant
    from voicekit.plugins.build import make_asr as make_asr
    from voicekit.plugins.build import make_tts as make_tts
    from voicekit.plugins.build import make_vad as make_vad
    from voicekit.session.interruption import InterruptionPolicy as InterruptionPolicy
    from voicekit.session.interruption import NeverInterrupt as NeverInterrupt
    from voicekit.session.interruption import VADInterruption as VADInterruption
    from voicekit.session.session import Session as Session
    from voicekit.session.session import SessionConfig as SessionConfig
    from voicekit.session.session import open_session as open_session
    from voicekit.tts.base import TTSEngine as TTSEngine
    from voicekit.vad.base import VADBackend as VADBackend
else:
    from voicekit._lazy import attach

    __getattr__, __dir__ = attach(__name__, _EXPORTS)
    del attach
