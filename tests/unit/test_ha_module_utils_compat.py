"""lockfile.py and storage_safety.py are shared with the Ansible shared_lock module (module_utils symlinks):
they must stay stdlib-only, import nothing from hamq and parse as Python 3.8."""

import ast
import sys
from pathlib import Path

import pytest

import hamq.ha

HA = Path(hamq.ha.__file__).parent


@pytest.mark.parametrize("name", ["lockfile.py", "storage_safety.py"])
def test_shared_file_is_stdlib_only_python38(name):
    tree = ast.parse((HA / name).read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports break the module_utils symlink"
            imported.add(node.module.split(".")[0])
    assert "hamq" not in imported
    not_stdlib = {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}
    assert not_stdlib == set()
