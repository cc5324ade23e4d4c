"""The exception types of the data layer: :class:`DataError`, and its :class:`LeadError`."""


class DataError(ValueError):
    """A database, record or file is missing, malformed or inconsistent.

    The message always names the record (``'mitdb/100'``) or folder and, when one file is at
    fault, that file and what was expected of it.
    """


class LeadError(DataError):
    """A record lacks a lead asked for by name (or two of the names select one lead), or the
    lead read has no valid sample: the one :class:`DataError` a caller can mend by naming other
    leads of the record."""
