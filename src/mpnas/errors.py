"""The one exception type for a user's mistake.

The CLI prints its message on one line and exits non-zero; anything else that escapes is a bug in
mpnas and keeps its traceback.
"""


class MpnasError(Exception):
    """Bad input or configuration: the message names the file, domain or field at fault."""

    exit_code = 2  # the CLI's exit status for it
