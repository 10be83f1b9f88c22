"""Waiting on trio's clock at the live path's rate (once per 20 ms frame), for less.

``trio.sleep_until`` wakes a task by cancelling a cancel scope at its deadline: trio raises
``Cancelled`` into the task and the scope catches it again — an exception per wake-up, on a path
that runs 50 times a second per session. :func:`sleep_until` here uses the same deadline (so the
same clock: ``MockClock`` times stay exact) but, when that deadline is what ends the wait, has trio
resume the task with a plain value instead; any other cancellation is raised as usual.
"""

from __future__ import annotations

import trio
from trio.lowlevel import (
    Abort,
    RaiseCancelT,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)


async def sleep_until(deadline: float) -> None:
    """Like :func:`trio.sleep_until` (a checkpoint even when ``deadline`` has passed; a cancel from
    outside raises ``Cancelled``), without raising and catching an exception at each wake-up."""
    task = current_task()
    scope = trio.CancelScope(deadline=deadline)

    def abort(raise_cancel: RaiseCancelT) -> Abort:
        if scope.cancel_called:  # our own deadline: wake with a value
            reschedule(task)
            return Abort.FAILED  # (rescheduled just above)
        return Abort.SUCCEEDED  # a cancel from outside: trio raises it into the task

    with scope:
        await wait_task_rescheduled(abort)
    # woken by the deadline while an enclosing scope was cancelled too: raise that cancel here,
    # as trio.sleep_until does (costs nothing when there is none)
    await checkpoint_if_cancelled()
