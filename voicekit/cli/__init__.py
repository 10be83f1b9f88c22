"""The ``voicekit`` command."""
