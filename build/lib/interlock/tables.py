"""Tables for people at any terminal width: wide when they fit, folded when they do not.

`--json` is the machine form; these only decide how the same cells are laid out for a person.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def natural_width(console: Console, table: Table) -> int:
    """How wide `table` is when no cell has to wrap."""
    return console.measure(table, options=console.options.update_width(10_000)).maximum


def transposed(
    title: str | None,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
) -> list[Table]:
    """The rows as columns (one column per row label, one row per header), split into as many
    tables as it takes for each to fit in `width`. For tables with many numeric columns and few
    rows (metrics): every value stays whole and next to its name."""
    name_width = max(len(h) for h in headers[1:]) if len(headers) > 1 else 8
    widths = [max(len(str(row[0])), *(len(str(c)) for c in row[1:]), 4) for row in rows]
    tables: list[Table] = []
    start = 0
    while start < len(rows) or not tables:
        used, end = name_width + 1, start
        while end < len(rows) and (end == start or used + widths[end] + 2 <= width):
            used += widths[end] + 2
            end += 1
        table = Table(
            title=title if not tables else None, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
        )
        table.add_column(headers[0] or "", justify="left", no_wrap=True)
        for row in rows[start:end]:
            table.add_column(Text(str(row[0])), justify="right", no_wrap=True)
        for i, header in enumerate(headers[1:], start=1):
            table.add_row(Text(header), *(Text(str(row[i])) for row in rows[start:end]))
        tables.append(table)
        if end == start:
            break
        start = end
    return tables


def stacked(headers: Sequence[Sequence[str]], rows: Sequence[Sequence[Sequence[str]]]) -> Table:
    """A narrow table whose cells hold several values, one per line (e.g. "status / risk"): the
    same facts as the wide table in fewer columns, each value unbroken."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, names in enumerate(headers):
        # As wide as its longest value, so rich narrows no column below a whole value (it
        # folds one only when even that cannot fit).
        longest = max((len(v) for row in rows for v in row[i]), default=0)
        table.add_column(" / ".join(names), overflow="fold", min_width=longest)
    for row in rows:
        table.add_row(*(Text("\n".join(v for v in cell if v)) for cell in row))
    return table
