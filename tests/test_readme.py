"""The README's tour points at lines that really hold the code it quotes, and the tests it cites exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|[^|]*\|(?P<links>[^|]*)\|\s*`(?P<code>.+?)`\s*\|$")
LINK = re.compile(r"\((?P<path>[\w/.]+)#L(?P<start>\d+)(?:-L(?P<end>\d+))?\)")


def test_tour_line_numbers():
    rows = 0
    for line in (ROOT / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if not match or "#L" not in match["links"]:
            continue
        links = list(LINK.finditer(match["links"]))
        spans = []
        for link in links:
            source = (ROOT / link["path"]).read_text().splitlines()
            start, end = int(link["start"]), int(link["end"] or link["start"])
            spans.append("\n".join(source[start - 1 : end]))
        # The quoted code sits in the last linked span.
        assert match["code"] in spans[-1], f"README row points at the wrong lines: {line}"
        # Every linked line is code, not a blank line.
        assert all(s.strip() for s in spans), line
        rows += 1
    assert rows >= 10


def test_link_texts_name_the_lines_they_link_to():
    """`[L205-L206](…#L211-L212)` would send a reader to one place and tell them another."""
    link = re.compile(r"\[(?P<label>[^\]]*)\]\([\w/.]+#L(?P<start>\d+)(?:-L(?P<end>\d+))?\)")
    checked = 0
    for match in link.finditer((ROOT / "README.md").read_text()):
        numbers = re.findall(r"\d+", match["label"].split(":")[-1])
        if re.fullmatch(r"L\d+(-L\d+)?|[\w/.]+:\d+(-\d+)?", match["label"]):
            assert numbers == [n for n in (match["start"], match["end"]) if n], match.group(0)
            checked += 1
    assert checked >= 20


def test_every_test_the_readme_names_exists():
    """The Reliability table and the prose cite tests by name: a renamed or deleted test must not stay cited."""
    readme = (ROOT / "README.md").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
    cited = set(re.findall(r"`(test_[a-z0-9_]+)`", readme))
    assert len(cited) >= 40
    assert sorted(name for name in cited if f"def {name}(" not in source) == []


def test_each_reliability_row_names_the_file_its_tests_are_in():
    """A row's tests sit in the file its "(in `tests/X.py`)" names (the names before it), or in
    tests/test_reliability.py where no file follows them: a row that named no file for a test of test_data.py sent
    a reader to the wrong file, and the check above (the name exists somewhere) let it through."""
    defined = {p.name: p.read_text() for p in (ROOT / "tests").glob("*.py")}
    wrong, rows = [], 0
    for line in (ROOT / "README.md").read_text().splitlines():
        if not re.match(r"^\| \d+ \|", line):
            continue
        rows += 1
        cell = re.split(r"(?<!\\)\|", line.strip())[-2]  # the last cell: the tests
        # each "(in `tests/X.py`)" closes the names before it; names after the last one are test_reliability.py's
        parts = re.split(r"\(in `tests/([\w.]+)`\)", cell)
        groups = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)] + [(parts[-1], "test_reliability.py")]
        for text, file in groups:
            for name in re.findall(r"`(test_[a-z0-9_]+)`", text):
                if f"def {name}(" not in defined.get(file, ""):
                    wrong.append(f"row {line.split('|')[1].strip()}: {name} is not in tests/{file}")
    assert rows >= 200
    assert wrong == []
