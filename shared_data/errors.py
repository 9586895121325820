"""The one exception type for bad or missing data."""


class DataError(Exception):
    """Bad, missing or corrupt input data; the message names the file or field and the fix."""
