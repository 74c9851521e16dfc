"""The one error type of this package: a message that names the cause and the fix."""


class NodeError(Exception):
    """The node cannot be built or started; str(error) is one line: cause, then what to do."""
