"""trio clients of the DashScope services."""

from voicekit_dashscope.client.task import Recognizer, RetryPolicy, TaskConnection, Timeouts

__all__ = ["Recognizer", "RetryPolicy", "TaskConnection", "Timeouts"]
