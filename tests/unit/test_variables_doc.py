"""The variables reference is generated from the argument specs, and the specs are complete.

Why: a newcomer reads docs/variables.md; it is only right if it is regenerated after every
argument-spec change and if every spec says its default, matching defaults/main.yml.
"""

import importlib.util
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _module():
    spec = importlib.util.spec_from_file_location("build_variables", ROOT / "docs" / "build_variables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _specs(role):
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def _walk(options, prefix=""):
    for name, spec in (options or {}).items():
        yield prefix + name, spec or {}
        yield from _walk((spec or {}).get("options"), f"{prefix}{name}.")


def test_variables_reference_is_up_to_date():
    assert (ROOT / "docs" / "variables.md").read_text() == _module().build(), (
        "docs/variables.md is out of date with roles/*/meta/argument_specs.yml. "
        "Fix: .venv/bin/python docs/build_variables.py"
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_default_or_is_required(role):
    missing, both = [], []
    for entry, spec in _specs(role).items():
        for name, option in _walk(spec.get("options")):
            if option.get("required"):
                if "default" in option:
                    both.append(f"{entry}: {name}")
            elif "default" not in option:
                missing.append(f"{entry}: {name}")
    assert not missing, (
        f"roles/{role}/meta/argument_specs.yml: options without default: {missing}. "
        "Fix: add `default:` (the value in defaults/main.yml) or `required: true`"
    )
    assert not both, f"roles/{role}: required and default are mutually exclusive in ansible-core: {both}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_are_the_role_defaults(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    main = _specs(role)["main"].get("options") or {}
    wrong = {
        name: (option["default"], defaults[name])
        for name, option in main.items()
        if "default" in option and name in defaults and option["default"] != defaults[name]
    }
    assert not wrong, (
        f"roles/{role}: argument_specs default differs from defaults/main.yml (spec, defaults): {wrong}. "
        "Fix: make them the same, then .venv/bin/python docs/build_variables.py"
    )
    undocumented = sorted(n for n in defaults if not n.startswith("__") and n not in main)
    assert not undocumented, (
        f"roles/{role}/defaults/main.yml sets {undocumented}, which meta/argument_specs.yml does not list. "
        "Fix: add them to the spec (ansible-core validates only what is listed)"
    )


@pytest.mark.parametrize("role", ROLES)
def test_structured_options_have_sub_options(role):
    bare = [
        name
        for spec in _specs(role).values()
        for name, option in _walk(spec.get("options"))
        if (option.get("type") == "dict" or option.get("elements") == "dict") and not option.get("options")
    ]
    assert not bare, f"roles/{role}: dict options without sub-options: {bare}. Fix: describe their keys under `options:`"


def test_generator_escapes_table_cells():
    text = _module().build()
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = line.replace("\\|", "").split("|")
            assert len(cells) == 6, f"a table row does not have 4 cells: {line}"
