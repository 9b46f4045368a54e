"""Text the command line prints: tables, the methods list, prediction rows (CSV or JSON)."""
from __future__ import annotations

import sys
from pathlib import Path


def table(rows: list[dict], columns: list[str]) -> str:
    """Aligned columns under a header; "(none)" below it when there are no rows."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + ([line(r) for r in cells] or ["(none)"]))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "-" if v is None else str(v)


def methods_markdown() -> str:
    from .distill import METHODS
    lines = ["| method | what it adds to CE on the prefix | options (defaults) |", "|---|---|---|"]
    for name, cls in sorted(METHODS.items()):
        options = ", ".join(f"`{k}={v}`" for k, v in cls.defaults.items()) or "-"
        lines.append(f"| `{name}` | {cls.description}{' (two-stage)' if cls.two_stage else ''} | {options} |")
    return "\n".join(lines)


def write_methods_table(readme: str = "README.md") -> None:
    """Replace the generated methods table in `readme` (between its methods:start and methods:end markers)."""
    path = Path(readme)
    text = path.read_text()
    start = text.index("\n", text.index("<!-- methods:start")) + 1
    end = text.index("<!-- methods:end -->")
    path.write_text(text[:start] + methods_markdown() + "\n" + text[end:])


def methods_text() -> str:
    """One entry per method, wrapped to the terminal (at most 100 columns): name and description,
    then its options (defaults) indented below."""
    import shutil
    import textwrap

    from .distill import METHODS
    width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
    pad = max(map(len, METHODS)) + 2
    lines = [f"{'method'.ljust(pad)}description (options with defaults below)", "-" * (width - 1)]
    for name, cls in sorted(METHODS.items()):
        text = cls.description + (" (two-stage)" if cls.two_stage else "")
        lines += textwrap.wrap(text, width - 1, initial_indent=name.ljust(pad), subsequent_indent=" " * pad)
        options = ", ".join(f"{k}={v}" for k, v in cls.defaults.items()) or "none"
        lines += textwrap.wrap("options: " + options, width - 1, initial_indent=" " * pad,
                               subsequent_indent=" " * (pad + 9))
    return "\n".join(lines)


def rows_text(rows: list[dict], json_format: bool) -> str:
    import csv
    import io
    import json
    if json_format:   # strict JSON: a value that is not a number (a row with no answer) is null
        plain = [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in rows]
        return json.dumps(plain, indent=1, allow_nan=False) + "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(rows[0]))
    for r in rows:
        w.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in r.values()])
    return buf.getvalue()


def written(path) -> None:
    """The line that says a file was written (stderr: results keep stdout)."""
    print(f"written: {path}", file=sys.stderr)
