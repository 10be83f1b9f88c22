"""voicekit: voice assistants and transcription on trio.

Where things are:

* ``voicekit.session`` — the live pipeline (:class:`~voicekit.session.Session`) and barge-in policies
* ``voicekit.handlers`` — assistants, intents, turns and replies
* ``voicekit.events`` — the frozen, timestamped events a session emits
* ``voicekit.audio`` — audio frames, file / stream / device sources, sinks, resampling, echo guards
* ``voicekit.vad``, ``voicekit.asr``, ``voicekit.tts`` — the plugin APIs (and the webrtc VAD)
* ``voicekit.plugins`` — discovery by entry points, and building plugins by name
* ``voicekit.testing`` — deterministic audio, fakes and timelines for tests on trio's virtual clock
"""

__version__ = "0.1.0"
