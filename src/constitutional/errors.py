"""The one error type the command line turns into a single clear line and exit status 2."""


class CaiError(Exception):
    """A problem with the user's input (a file, a flag, a spec) that they can fix.

    The message is one line that names the file, the line or record, and the field.
    """
