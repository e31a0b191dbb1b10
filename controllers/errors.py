"""The controllers package's exceptions, in one place.

Every message is one line that says what is wrong and what is accepted, so the CLI
can print it as is (it turns these into `UsageError`, exit code 2).
"""


class ControllerError(Exception):
    """Base class: something about a controller the user can fix."""


class ControllerSpecError(ControllerError, ValueError):
    """A `--controller` spec that no adapter accepts (the message lists accepted specs)."""


class ControllerUnavailable(ControllerError):
    """The named device is not there (no such serial port, no camera, no dongle)."""


class ProfileError(ControllerError):
    """A calibration profile that cannot be found, read or written (names the file)."""
