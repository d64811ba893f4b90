"""pytest hooks for the notebooks that nbval runs.

nbval stops each notebook's kernel with SIGKILL, so the kernel's exit
handlers never run and its temp folder stays behind, exactly as after a
crash. The package handles that case by sweeping stale folders when it is
imported, so each notebook's kernel sweeps the folder of the kernel before it.
Nothing imports the package after the last kernel, so this hook sweeps its
folder once the notebooks are done. That happens before the session-wide
check in tests/conftest.py looks for leftovers.

`tests/test_notebooks_cleanup.py` runs nbval without this hook and checks
that a fresh import alone removes what a killed notebook kernel left.
"""

from __future__ import annotations

import logging

import pytest

from pktmask_nb.resources import sweep_stale

logger = logging.getLogger(__name__)

# Node ids of the folders whose teardown already has a sweep registered.
_sweep_registered: set[str] = set()


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Register one sweep on the notebooks' folder, to run when that folder is torn down.

    pytest tears a folder down after the notebooks in it, so after nbval has
    killed the last of their kernels.
    """
    folder = item.parent.parent  # the cell's notebook, then the notebook's folder
    if folder is None or folder.nodeid in _sweep_registered:
        return
    _sweep_registered.add(folder.nodeid)
    folder.addfinalizer(_sweep_after_kernels)


def _sweep_after_kernels() -> None:
    swept = sweep_stale()
    logger.debug("Swept %d temp folders left by killed notebook kernels", len(swept))
