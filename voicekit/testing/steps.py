"""Counting the scheduler's work: how many task steps and loop rounds a piece of trio code takes.

A *task step* is one resumption of a task by trio's scheduler (a switch into it); a *round* is one
pass of the run loop (one wait for I/O or a timer). On the live path every step that carries no
work is CPU spent for nothing, so the counts are a cost figure that, unlike timings, is exact and
the same on every machine — under ``MockClock`` it pins the live path's shape in a test.

    counter = StepCounter()
    trio.run(main, clock=MockClock(autojump_threshold=0), instruments=[counter])
    counter.steps, counter.rounds, counter.by_task.most_common(3)
"""

from __future__ import annotations

from collections import Counter

import trio


class StepCounter(trio.abc.Instrument):
    """A trio Instrument counting task steps (in all and per task name) and run-loop rounds."""

    def __init__(self) -> None:
        self.steps = 0
        self.rounds = 0
        self.by_task: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        self.by_task[task.name] += 1

    def after_io_wait(self, timeout: float) -> None:
        self.rounds += 1
