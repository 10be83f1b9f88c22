"""Batch transcription: many recordings in, one transcript file per recording out.

``voicekit transcribe --cluster ...`` lands here. The job logic (listing inputs, naming and
checking outputs, deciding what is already done, writing each output atomically as it finishes,
the progress bar and the summary) lives in :mod:`voicekit.batch.job` and is shared by two
backends:

* :mod:`voicekit.batch.local` — this process: local engines one file after another, or a cloud
  model with a bounded number of files in flight and back-off on the service's rate-limit answers;
* :mod:`voicekit.batch.ray_backend` — a pool of Ray actors, each building the engines once and
  transcribing file after file (imported only when Ray is used, so ``import voicekit`` never
  imports ``ray``).
"""

from __future__ import annotations

from voicekit.batch.job import Job, Outcome, Summary, list_inputs, plan_job, run_batch

__all__ = ["Job", "Outcome", "Summary", "list_inputs", "plan_job", "run_batch"]
