"""The README shows the two commands and documents every CHAT_ setting the code reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings_table_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "scripts" / "settings_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_configuration_table_matches_the_settings_classes() -> None:
    table = settings_table_module()
    readme = (ROOT / "README.md").read_text()
    assert table.readme_table(readme) == table.markdown(), (
        "README's configuration table is stale: run `python scripts/settings_table.py --write`"
    )


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
