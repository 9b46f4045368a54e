"""One exception type for bad input: the CLI prints its message on one line and exits 2."""


class EarlykdError(Exception):
    """A problem with the user's input, named in one line (file, row, field)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise EarlykdError(message)
