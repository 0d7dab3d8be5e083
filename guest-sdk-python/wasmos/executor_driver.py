"""What an executor can ask of its agent while a task runs: thin wrappers over the imported
``wasmos:framework/executor-driver`` interface.

Only the executor half may call these; from the scheduler the host refuses them.
"""

from wit_world.imports import executor_driver as _imports
from wit_world.imports.types import LogLevel


def log(level: LogLevel, message: str) -> None:
    """Writes a line to the current task's log on the agent. Lines are cut to 4,096 bytes and
    budgeted per framework (100 lines and 64 KiB a second, bursts of 1,000 lines and 256 KiB)."""
    _imports.log(level, str(message))


def info(message: str) -> None:
    """:func:`log` at ``info``."""
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    """:func:`log` at ``warn``."""
    log(LogLevel.WARN, message)


def progress(message: str) -> None:
    """Reports progress on the current task; the scheduler sees a ``running`` status with this
    message (cut to 4,096 bytes)."""
    _imports.progress(str(message))


def send_framework_message(data: bytes) -> None:
    """Sends bytes (at most 4 MiB) to this framework's scheduler, which receives them in
    ``Scheduler.framework_message``."""
    _imports.send_framework_message(bytes(data))
