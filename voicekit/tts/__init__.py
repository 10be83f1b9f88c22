"""Text to speech: the plugin API (:mod:`voicekit.tts.base`) and the built-in espeak-ng engine."""
