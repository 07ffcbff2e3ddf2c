"""The one exception type for mistakes a user can fix."""


class DLMError(Exception):
    """A user-fixable problem; the CLI prints its message as one line and exits non-zero."""
