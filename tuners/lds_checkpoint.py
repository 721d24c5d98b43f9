"""The checkpoint of LDS's shared add-on weights W, so a killed search resumes.

W is saved with its optimizer's step (which drives the cosine schedule):

1. when the search begins, W is written to `<project>/shared_addons.weights.h5`;
2. a trial trains W and writes it to `shared_addons.trial_<id>.weights.h5`
   (pending);
3. once the oracle has recorded the trial as completed, the pending file is
   renamed over `shared_addons.weights.h5`; a failed trial's pending file is
   deleted and W reloaded, so a retry starts from W before it.

On resume, a pending file of a trial the oracle recorded as completed is
promoted (the kill fell between 3's two writes), any other one deleted (its
trial runs again), and W loaded. Every write is a temporary file and a
rename (`spzoo.io.atomic_path`).
"""

import os
import re
from collections.abc import Callable

WEIGHTS = "shared_addons.weights.h5"
PENDING = re.compile(r"shared_addons\.trial_(\d+)\.weights\.h5")
TEMPORARY = re.compile(
    r"\.tmp-\d+-[0-9a-f]+\.shared_addons\..*weights\.h5"  # spzoo.io.atomic_path
    r"|shared_addons\..*\.tmp\.weights\.h5"  # written by earlier versions
)


class SharedWeightsCheckpoint:
    """Steps 1-3 above for a `SharedAddOns` supernet in a project folder.

    Args:
        project_dir: The LDS search's KerasTuner project folder.
        shared: The `SharedAddOns` supernet (its `save`/`load`).
    """

    def __init__(self, project_dir: str, shared):
        self.project_dir = project_dir
        self.shared = shared
        self.path = os.path.join(project_dir, WEIGHTS)

    def pending_path(self, trial_id) -> str:
        """Where a trial writes W before the oracle has recorded its end."""
        return os.path.join(
            self.project_dir, f"shared_addons.trial_{trial_id}.weights.h5"
        )

    def recover(self, completed: Callable[[str], bool], resumed: bool) -> None:
        """Brings W back to its state after the trials the oracle completed.

        Args:
            completed: Whether the oracle recorded a trial id as completed.
            resumed: Whether a search is resumed (else W is left as given;
                `begin` writes it).
        """
        for name in sorted(os.listdir(self.project_dir)):
            path = os.path.join(self.project_dir, name)
            pending = PENDING.fullmatch(name)
            if pending and completed(pending.group(1)):
                os.replace(path, self.path)
            elif pending or TEMPORARY.fullmatch(name):
                os.remove(path)
        if resumed and os.path.exists(self.path):
            self.shared.load(self.path)

    def begin(self) -> None:
        """Step 1: writes W as the search begins."""
        self.shared.save(self.path)

    def write_pending(self, trial_id) -> None:
        """Step 2: writes W as a trial trained it."""
        self.shared.save(self.pending_path(trial_id))

    def end(self, trial_id, completed: bool) -> None:
        """Step 3: promotes a completed trial's W, or undoes a failed one's."""
        pending = self.pending_path(trial_id)
        if completed and os.path.exists(pending):
            os.replace(pending, self.path)
        else:  # failed or queued for retry: undo its training of W
            if os.path.exists(pending):
                os.remove(pending)
            self.shared.load(self.path)
