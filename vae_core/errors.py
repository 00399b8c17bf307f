"""One exception type for every problem a user can fix.

The CLI and the app print ``str(err)`` as one line; a VAEError's message always
names what went wrong and what to do about it.
"""


class VAEError(Exception):
    """A problem with the user's input (config, checkpoint, dataset, repo id)."""


class TrainingDiverged(VAEError):
    """The loss became NaN or Inf; the run stopped and kept its last good checkpoint."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
