"""Make ``ansible_collections.hamq.cluster`` importable when the tests run under plain pytest.

ansible-test runs them from a checkout at .../ansible_collections/hamq/cluster
where the import just works. From a plain checkout a temporary directory gets
``ansible_collections/hamq/cluster`` as a link to the repository, and goes on
sys.path (``ansible_collections`` is a namespace package, so the bundled
collections stay importable too).
"""

import os
import shutil
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _collection_root():
    try:
        import ansible_collections.hamq.cluster.plugins  # noqa: F401

        return None
    except ImportError:
        pass
    root = tempfile.mkdtemp(prefix="hamq-collection-")
    os.makedirs(os.path.join(root, "ansible_collections", "hamq"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "hamq", "cluster"))
    sys.path.insert(0, root)
    return root


_ROOT = _collection_root()


def pytest_unconfigure(config):
    if _ROOT:
        shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def collection_pythonpath():
    """PYTHONPATH under which a subprocess can import ansible_collections.hamq.cluster."""
    from ansible_collections.hamq.cluster import plugins

    # .../ansible_collections/hamq/cluster/plugins -> the directory above ansible_collections
    path = list(plugins.__path__)[0]
    path = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(path))))
    return os.pathsep.join([path] + [p for p in sys.path if p])
