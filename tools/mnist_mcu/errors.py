"""The one exception type the CLI turns into a one-line error message."""


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""
