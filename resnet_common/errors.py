"""The error every command line turns into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input a user can fix; the message says how."""
