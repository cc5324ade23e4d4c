"""The one exception type of the data layer."""


class DataError(ValueError):
    """A database, record or file is missing, malformed or inconsistent.

    The message always names the record (``'mitdb/100'``) or folder and, when one file is at
    fault, that file and what was expected of it.
    """
