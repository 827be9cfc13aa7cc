"""Text cells of the CSV files hf_vit writes, safe to open in a spreadsheet.

A cell that starts with = + - @, a tab or a carriage return is a formula to Excel, LibreOffice and Google
Sheets: a class name from a dataset card such as `=HYPERLINK("http://x","y")` would run when
misclassified.csv is opened. As OWASP advises, such a cell gets a leading single quote, which spreadsheets
show as text. A cell whose quotes already precede such a character gets one more, so `csv_value` returns
exactly the text that `csv_cell` was given.
"""

import re

_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def csv_cell(value):
    """`value` as a CSV cell: text that a spreadsheet would run as a formula starts with a single quote."""
    return "'" + value if isinstance(value, str) and _FORMULA.match(value) else value


def csv_value(cell):
    """The text `csv_cell` was given, from the cell it wrote."""
    return cell[1:] if isinstance(cell, str) and cell.startswith("'") and _FORMULA.match(cell) else cell


__all__ = ["csv_cell", "csv_value"]
