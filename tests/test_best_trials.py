"""Equal scores rank in start order, the same after a reload
(`spzoo.tuners.persistence.ResumableOracle.get_best_trials`)."""

import keras_tuner
import pytest
from keras_tuner.engine.trial import Trial, TrialStatus

from spzoo.tuners.persistence import ResumableOracle


class Oracle(ResumableOracle, keras_tuner.oracles.RandomSearchOracle):
    pass


@pytest.mark.parametrize("direction", ["max", "min"])
def test_equal_scores_rank_in_start_order_whatever_the_dict_order(direction):
    oracle = Oracle(objective=keras_tuner.Objective("score", direction), max_trials=9)
    scores = {"0": 0.5, "1": 0.9, "2": 0.9, "3": 0.1, "4": 0.9}
    for trial_id, score in scores.items():
        trial = Trial(oracle.get_space(), trial_id=trial_id)
        trial.status = TrialStatus.COMPLETED
        trial.score = score
        oracle.trials[trial_id] = trial
        oracle.start_order.append(trial_id)
    running = Trial(oracle.get_space(), trial_id="5", status=TrialStatus.RUNNING)
    oracle.trials["5"] = running
    oracle.start_order.append("5")
    expected = ["1", "2", "4", "0", "3"] if direction == "max" else ["3", "0"]
    for order in (list(oracle.trials), list(reversed(oracle.trials))):
        oracle.trials = {trial_id: oracle.trials[trial_id] for trial_id in order}
        ranked = [t.trial_id for t in oracle.get_best_trials(6)]
        assert ranked[: len(expected)] == expected
        assert ranked[-1] == "5"  # not completed: last
        assert [t.trial_id for t in oracle.get_best_trials(1)] == expected[:1]
