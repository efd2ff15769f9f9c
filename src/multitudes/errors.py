"""The one exception type that reaches the user as a single line on stderr (exit code 2)."""


class UserError(Exception):
    """Bad input from the user or the outside world: a file, a config value, a download.

    The CLI prints `multitudes: error: <message>` and exits with code 2, never a traceback.
    Messages name the thing that is wrong (the file, the key, the URL) and what was expected.
    """
