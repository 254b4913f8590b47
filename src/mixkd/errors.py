"""Errors that mixkd reports to the user as one line (the CLI prints them without a traceback)."""


class MixkdError(Exception):
    """A problem with the user's input or environment; its message names the problem and the fix."""


class ConfigError(MixkdError):
    """A config key is unknown, mistyped or out of range."""


class DataError(MixkdError):
    """A dataset is missing or malformed."""


class CheckpointError(MixkdError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


class UnreadableCheckpoint(CheckpointError):
    """A complete checkpoint this installation cannot read (a newer torch or mixkd, a foreign file): kept as is."""


class CacheError(MixkdError):
    """The teacher-output cache cannot be created or is damaged."""


class Stopped(KeyboardInterrupt):
    """A stop asked by a signal (Ctrl-C / SIGINT, SIGTERM); `note` says how to continue."""

    def __init__(self, signum: int, note: str = "") -> None:
        super().__init__(signum, note)
        self.signum, self.note = signum, note
