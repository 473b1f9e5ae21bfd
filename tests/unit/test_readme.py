import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_is_assembled_from_docs():
    spec = importlib.util.spec_from_file_location("build_readme", ROOT / "docs" / "build_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "README.md").read_text() == module.build(), (
        "README.md is out of date with docs/*.md. Fix: python3 docs/build_readme.py"
    )
