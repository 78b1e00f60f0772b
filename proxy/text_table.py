"""Plain-text tables for people reading a terminal (``recordings list``, ``dnr list``).

Each column is as wide as its widest cell, header included, so nothing is cut off and
every row lines up whatever the data; columns named in ``right`` (numbers) align right.
The last column is not padded, so no line ends in spaces.  Scripts use ``--json``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

GAP = "  "


def format_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, right: Collection[str] = ()
) -> list[str]:
    """The table's lines: ``header`` first, then one line per row of ``len(header)`` cells."""
    table = [list(header), *(list(row) for row in rows)]
    for row in table:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    last = len(header) - 1
    lines = []
    for row in table:
        cells = []
        for i, (name, cell) in enumerate(zip(header, row, strict=True)):
            if name in right:
                cells.append(cell.rjust(widths[i]))
            else:
                cells.append(cell if i == last else cell.ljust(widths[i]))
        lines.append(GAP.join(cells))
    return lines
