"""`service` never imports `training`: they meet only in the bundle (recbundle)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_service_never_imports_training() -> None:
    files = sorted(SERVICE.rglob("*.py"))
    assert len(files) > 10
    offenders = {
        str(f.relative_to(SERVICE.parent)): sorted(
            m for m in imported_modules(f) if m.split(".")[0] == "training"
        )
        for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}


def test_guard_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import training.models\nfrom training.eval import metrics\ndef f():\n    import training\n"
    )
    assert {"training.models", "training.eval", "training"} <= imported_modules(probe)
