"""The versions of LDS's shared add-on weights W: one owner, one merge rule.

W (every add-on kernel once, and the optimizer's step that drives the
cosine schedule) is owned by the `LocationDirectionOracle`: in a
chief/worker search it lives on the chief, the only process that writes a
version of W. The files, NumPy `.npz` written atomically (a temporary file,
a rename: `spzoo.io.atomic_path`), on the folder every process of the
search shares:

- `<project>/shared_addons/v<version>.npz`: version `v` of W. Version 0 is
  the supernet as built (add-on kernels at zero, step 0); version `v + 1`
  is version `v` plus one completed trial's update. A version file never
  changes once the oracle's state names it.
- `<project>/trial_<id>/shared_addons_update.npz`: the update of a trial,
  `W_trained - W_start` (only the kernels it changed, and its steps).

A trial starts from the version the oracle named in its candidate
(`"weights_version"`, recorded in its `trial.json`), trains, and writes
its update; when the oracle records it COMPLETED it commits

    version v + 1 = version v + update        (v: the oracle's current version)

so the last version is version 0 plus the update of every completed trial,
each once. With one process every trial starts from the current version,
and `v + 1` is what the trial trained: the paper's sequential search. With
several workers, a trial that started from an older version `b < v` adds
its update to the newer W: asynchronous SGD with stale updates, as in a
parameter server (Dean et al., 2012). The updates are plain SGD steps (no
momentum, no weight decay), so a kernel a trial did not use has a zero
update, and two trials that used different locations merge exactly as if
they had run one after the other.

A failed trial commits nothing (its retry starts from its version again).
A kill at any point leaves the version the oracle's state names intact:
a version written before a kill kept it out of the state is overwritten by
the next commit; `collect` deletes only versions no state can name.
"""

import os
import re

import numpy as np

from spzoo.io import atomic_path
from spzoo.nhn.addon_supernet import ITERATIONS

FOLDER = "shared_addons"
UPDATE = "shared_addons_update.npz"
VERSION = re.compile(r"v(\d+)\.npz")


def update_of(start: dict, trained: dict) -> dict:
    """A trial's update `trained - start`, without the arrays it left alone.

    Args:
        start: W the trial started from (`SharedAddOns.state()`).
        trained: W after its training.

    Returns:
        `{name: trained - start}` of the arrays that changed (the
        optimizer's step always).
    """
    update = {}
    for name, value in trained.items():
        delta = np.asarray(value) - np.asarray(start[name])
        if name == ITERATIONS or np.any(delta):
            update[name] = delta
    return update


def merge(current: dict, update: dict) -> dict:
    """The merge rule: the next version of W is `current + update`.

    Args:
        current: The oracle's current version of W.
        update: A trial's `update_of(start, trained)`; arrays it does not
            name are zero.

    Returns:
        The next version (arrays of `current`'s dtypes).
    """
    unknown = sorted(set(update) - set(current))
    if unknown:
        raise ValueError(f"The update names arrays W does not have: {unknown}.")
    return {
        name: (
            np.asarray(value) + np.asarray(update[name]) if name in update else value
        ).astype(np.asarray(value).dtype)
        for name, value in current.items()
    }


def _write(path, arrays: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _read(path) -> dict:
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


class SharedWeightsVersions:
    """The version files of W and the trials' updates in a project folder.

    Args:
        project_dir: The LDS search's KerasTuner project folder.
    """

    def __init__(self, project_dir: str):
        self.project_dir = project_dir
        self.folder = os.path.join(project_dir, FOLDER)

    def path(self, version: int) -> str:
        """The file of a version of W."""
        return os.path.join(self.folder, f"v{int(version):06d}.npz")

    def update_path(self, trial_id) -> str:
        """The file of a trial's update."""
        return os.path.join(self.project_dir, f"trial_{trial_id}", UPDATE)

    def versions(self) -> list[int]:
        """The versions on disk, oldest first."""
        names = os.listdir(self.folder) if os.path.isdir(self.folder) else []
        return sorted(int(m.group(1)) for m in map(VERSION.fullmatch, names) if m)

    def read(self, version: int) -> dict:
        """Version `version` of W."""
        path = self.path(version)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Version {version} of the shared add-on weights is missing: "
                f"{path!r}. The LDS search in {self.project_dir!r} cannot go on; "
                "start it afresh in another directory (or with --overwrite)."
            )
        return _read(path)

    def initialize(self, weights: dict) -> None:
        """Writes version 0 (the supernet as built) unless it exists."""
        if not os.path.isfile(self.path(0)):
            _write(self.path(0), weights)

    def write_update(self, trial_id, start: dict, trained: dict) -> None:
        """Writes a trial's update (before it reports its end)."""
        _write(self.update_path(trial_id), update_of(start, trained))

    def read_update(self, trial_id) -> dict:
        """A trial's update."""
        path = self.update_path(trial_id)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Trial {trial_id} completed without writing its update of the "
                f"shared add-on weights ({path!r})."
            )
        return _read(path)

    def commit(self, trial_id, version: int) -> int:
        """Writes version `version + 1`: `version` plus the trial's update."""
        merged = merge(self.read(version), self.read_update(trial_id))
        _write(self.path(version + 1), merged)
        return version + 1

    def collect(self, keep) -> None:
        """Deletes the version files not in `keep` (no trial can start there)."""
        keep = {int(v) for v in keep}
        for version in self.versions():
            if version not in keep:
                os.remove(self.path(version))
