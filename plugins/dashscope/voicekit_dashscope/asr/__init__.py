"""ASR plugins (entry-point group ``voicekit.asr``)."""
