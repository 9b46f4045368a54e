"""One exception type for bad input: the CLI prints its message on one line and exits 2."""
import difflib
from numbers import Integral


class EarlykdError(Exception):
    """A problem with the user's input, named in one line (file, row, field)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise EarlykdError(message)


def is_int(value) -> bool:
    """An integer, numpy's included, and not a bool (to Python, True is the integer 1)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_label_column(value) -> bool:
    """A label column as a setting: an index from 0, a header name, or None (no label column)."""
    return value is None or isinstance(value, str) or is_int(value)


def did_you_mean(name: str, known, otherwise: str | None = None) -> str:
    """'did you mean a, b?' for close matches of `name` in `known`; else `otherwise` ('known: ...')."""
    known = list(known)
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5) if isinstance(name, str) else []
    if near:
        return f"did you mean {', '.join(near)}?"
    return otherwise if otherwise is not None else f"known: {', '.join(known) or 'none'}"


def lookup(table: dict, name: str, what: str):
    """table[name], or one line naming the unknown `what` with close matches (a registry's look-up)."""
    if not isinstance(name, str) or name not in table:
        raise EarlykdError(f"unknown {what} '{name}' ({did_you_mean(name, sorted(table))})")
    return table[name]


def register_in(table: dict, name: str, entry, what: str):
    """table[name] = entry; a second entry under a taken name is refused (it would silently replace the first)."""
    if name in table and table[name] is not entry:
        article = "an" if what[0] in "aeiou" else "a"
        raise EarlykdError(f"{article} {what} named '{name}' is already registered ({table[name].__module__}); "
                           "choose another name")
    table[name] = entry
    return entry
