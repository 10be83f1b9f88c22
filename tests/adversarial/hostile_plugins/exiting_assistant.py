"""An assistant whose handler calls ``sys.exit()``: a careless handler must end at most its own
conversation, never the ``voicekit serve`` process that serves everyone."""

import sys

from voicekit.handlers import Assistant, Turn

assistant = Assistant("exiting")


@assistant.intent("go forward {n:number} [meter|meters|metre|metres]")
async def leave(turn: Turn) -> str:
    sys.exit(3)
