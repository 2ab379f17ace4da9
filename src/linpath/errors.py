"""The one exception type users see.

Anything raised as a LinpathError is a problem with the user's input or environment
(a missing file, a bad option, a corrupt checkpoint). The CLI prints its message as a single
line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class LinpathError(Exception):
    """A user-facing error: the message names what is wrong and where."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
