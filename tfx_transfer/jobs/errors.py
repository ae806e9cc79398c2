"""The scripts' error for bad input."""


class FlagError(ValueError):
    """A bad flag value; the message is one line naming the flag, the value and the fix (exit code 2)."""
