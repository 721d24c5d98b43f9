"""What every search shares: atomic state files, checked and repaired on resume.

KerasTuner writes `oracle.json`, each `trial_<id>/trial.json` and the
tuner's `<tuner_id>.json` in place (`keras_tuner.src.utils.save_json`): a
kill during a write truncates the file and every later run fails with
JSON's "Unterminated string ..." naming no file. The mixins here replace
those writes and check the reads, keeping KerasTuner's own file layout and
state format:

- `ResumableOracle` (before `keras_tuner.Oracle` in the bases): `save` and
  `_save_trial` write through `spzoo.io.atomic_write_json` (temporary file,
  fsync, rename); `reload` first parses every state file (a corrupt one
  raises `CorruptFileError` naming it), then repairs what a kill *between*
  two writes leaves: a trial whose file was written but that the oracle's
  state never recorded is dropped (its id is handed out again), a trial
  that had already ended is not run again, and a trial that was running
  is run again from scratch (metrics it reported before the kill dropped).
- `ResumableTuner` (before `keras_tuner.Tuner` / `BaseTuner`): the tuner's
  state file, the same way.

So a search killed at any instant (SIGKILL included) resumes when started
again with the same settings and makes the same trials as a run that was
never interrupted.
"""

import glob
import os

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from spzoo.io import CorruptFileError, atomic_write_json, read_json

TRIAL_FILE = "trial.json"


def _resume_error(error: CorruptFileError, project_dir: str) -> CorruptFileError:
    return CorruptFileError(
        f"Cannot resume the search in {project_dir!r}: {error} Restore the file, "
        "or start afresh in another directory (or with --overwrite / "
        "`overwrite=True`)."
    )


def check_state_files(project_dir: str, files=()) -> None:
    """Parses the search's state files; `CorruptFileError` names a bad one.

    Args:
        project_dir: The KerasTuner project folder.
        files: Further files to check (e.g. the tuner's state).
    """
    paths = sorted(glob.glob(os.path.join(project_dir, "trial_*", TRIAL_FILE)))
    paths.append(os.path.join(project_dir, "oracle.json"))
    for path in [*paths, *files]:
        if not os.path.isfile(path):
            continue
        try:
            read_json(path, "search state file")
        except CorruptFileError as error:
            raise _resume_error(error, project_dir) from None


class ResumableOracle:
    """Mixin for `keras_tuner.Oracle` subclasses (see the module docstring).

    A subclass that updates its own state when a trial ends does it in
    `trial_ended(trial)`, not by overriding `end_trial`: `end_trial` writes
    the oracle's state once, after KerasTuner's bookkeeping *and* the
    subclass's, so no kill can fall between the two.
    """

    _defer_saves = False

    def save(self):
        """Writes the oracle's state atomically (a kill never truncates it)."""
        if self._defer_saves:
            return
        atomic_write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), TRIAL_FILE)
        atomic_write_json(path, trial.get_state())

    def trial_ended(self, trial):
        """Called by `end_trial` with the oracle's trial, before the one save."""

    @keras_tuner.synchronized
    def end_trial(self, trial):
        # KerasTuner's `end_trial` saves the state before it forgets the
        # ongoing trial; here the state is saved once, when all is recorded.
        self._defer_saves = True
        try:
            super().end_trial(trial)
            self.trial_ended(self.trials[trial.trial_id])
        finally:
            self._defer_saves = False
        self.save()

    def get_best_trials(self, num_trials=1):
        """KerasTuner's ranking, equal scores in start order.

        KerasTuner sorts `self.trials` stably, so equal scores keep the
        dict's order, which a reload changes; the start order is recorded.
        """
        position = {trial_id: i for i, trial_id in enumerate(self.start_order)}
        sign = -1 if self.objective.direction == "max" else 1
        done = sorted(
            (t for t in self.trials.values() if t.status == TrialStatus.COMPLETED),
            key=lambda t: (sign * t.score, position.get(t.trial_id, len(position))),
        )
        rest = [t for t in self.trials.values() if t.status != TrialStatus.COMPLETED]
        return (done + rest)[:num_trials]

    def reload(self):
        """Reloads the search; repairs what a kill between two writes leaves."""
        check_state_files(self._project_dir)
        super().reload()
        # Written by `create_trial` before a kill kept it out of the oracle's
        # state: never started, its id comes again.
        for trial_id in [t for t in self.trials if t not in self.start_order]:
            del self.trials[trial_id]
        # Ended and still ongoing (KerasTuner's own `end_trial`, before
        # `trial_ended` ran): run it again, it ends again.
        retry = set(self._retry_queue)
        self.end_order = [t for t in self.end_order if t not in retry]
        for trial_id in self._retry_queue:
            # A fresh tracker of the trial's metrics (KerasTuner's
            # `MetricsTracker`, not among its public names).
            self.trials[trial_id].metrics = type(self.trials[trial_id].metrics)()


class ResumableTuner:
    """Mixin for `keras_tuner` tuners: the tuner's state file, atomically."""

    def save(self):
        """Writes the oracle's (on the chief) and the tuner's state atomically."""
        if not self._is_worker():
            self.oracle.save()
        atomic_write_json(self._get_tuner_fname(), self.get_state())

    def reload(self):
        fname = self._get_tuner_fname()
        if os.path.isfile(fname):
            try:
                read_json(fname, "search state file")
            except CorruptFileError as error:
                raise _resume_error(error, self.project_dir) from None
        super().reload()
