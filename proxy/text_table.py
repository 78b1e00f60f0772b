"""Plain-text tables for people reading a terminal (``recordings list``, ``dnr list``).

Each column is as wide as its widest cell, header included, so nothing is cut off and
every row lines up whatever the data; columns named in ``right`` (numbers) align right.
No line ends in spaces.  Scripts use ``--json``.
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
    aligns = [str.rjust if name in right else str.ljust for name in header]
    return [
        GAP.join(
            align(cell, width) for align, cell, width in zip(aligns, row, widths, strict=True)
        ).rstrip()
        for row in table
    ]
