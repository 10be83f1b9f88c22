"""An assistant whose handler raises: used by the CLI tests."""

from voicekit.handlers import Assistant, Turn

assistant = Assistant("broken", apology="Sorry, my handler failed.")


@assistant.intent("go forward {n:number} [meters]")
async def explode(turn: Turn) -> str:
    raise ZeroDivisionError("on purpose")
