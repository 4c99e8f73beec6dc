"""Files as Windows and Excel write them: what is accepted quietly and what gets a message naming it.

Accepted as they are: a UTF-8 byte-order mark at the start of a CSV or TOML file
(Notepad's and Excel's "UTF-8 with BOM"), and CRLF line endings. Refused, each
with a sentence that names what the file is and how to save it instead:

* a folder where a file is expected;
* an Excel workbook (``.xlsx``, a ZIP archive, or the older ``.xls``) given as a CSV;
* text saved as UTF-16 (Excel's "Unicode Text") or in a legacy code page (not UTF-8).
"""

from __future__ import annotations

from pathlib import Path

#: The first bytes of the files we recognise.
_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_UTF16 = (b"\xff\xfe", b"\xfe\xff")
UTF8_BOM = b"\xef\xbb\xbf"


def file_problem(path: str | Path, what: str = "CSV file") -> str | None:
    """Why ``path`` cannot be read as a text ``what`` (a sentence naming the fix), or None if it may be."""
    file = Path(path)
    if file.is_dir():
        return (f"{file}: is a folder, not a {what}; give the path of the file inside it"
                + (" (for example " + ", ".join(sorted(p.name for p in file.glob('*.csv'))[:3]) + ")"
                   if any(file.glob("*.csv")) else ""))
    if not file.is_file():
        return None  # the caller's "file not found" says it
    try:
        with file.open("rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    save = ("in Excel use File > Save As > \"CSV UTF-8 (Comma delimited)\"" if "CSV" in what else
            "write it as plain UTF-8 text")
    if head.startswith(_ZIP):
        return (f"{file}: this looks like an Excel workbook (.xlsx), not a {what}; {save}"
                + (", or in pandas: pd.read_excel(path).to_csv(new_path, index=False)" if "CSV" in what else ""))
    if head.startswith(_OLE):
        return f"{file}: this looks like an old Excel workbook (.xls), not a {what}; {save}"
    if head.startswith(_UTF16):
        return (f"{file}: the file is UTF-16 text (Excel's \"Unicode Text\"); save it as \"CSV UTF-8\" or convert "
                "it: iconv -f UTF-16 -t UTF-8")
    return None


def read_text(path: str | Path, what: str) -> str:
    """A text file as UTF-8 with a leading byte-order mark dropped; OSError/ValueError with a named cause."""
    problem = file_problem(path, what)
    if problem is not None:
        raise ValueError(problem)
    data = Path(path).read_bytes()
    if data.startswith(UTF8_BOM):  # Notepad's "UTF-8 with BOM": the text is fine, the mark is not TOML or JSON
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (in Notepad: Save As, "
                         "Encoding UTF-8)") from None


__all__ = ["UTF8_BOM", "file_problem", "read_text"]
