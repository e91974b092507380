"""The README's config examples with `tests:` pass `kubelogs test`: the examples users
copy are proven to do what they claim (and in docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubelogs.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(_BLOCK.findall(doc.read_text())):
            if re.search(r"^tests:", block, re.MULTILINE):
                found.append((f"{doc.name}#{i}", block))
    return found


def test_there_is_at_least_one_example() -> None:
    assert examples()


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_readme_example_passes_kubelogs_test(
    where: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(text)
    rc = main(["test", "-c", str(path)])
    out, err = capsys.readouterr()
    assert rc == 0, f"{where}:\n{out}{err}"
    assert " 0 failed" in out
