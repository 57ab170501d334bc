"""Optuna samplers for the black-box strategies optuna does not ship: uniform random search,
regularised evolution and REINFORCE.

All are pure functions of the study's finished trials (and a seed): the population, the policy
and the baseline are rebuilt from the trial history on every ``ask``, and each trial draws from a
random stream seeded by ``(seed, its place among the trials that did not fail)``. So a study
resumed from its storage, or after a worker was stopped mid-trial, continues exactly as if it had
never stopped, and several workers can share one study (each sees the others' results as they
land; each trial number is one worker's).

Search spaces are categorical (ops, inputs); every parameter must be suggested with
``trial.suggest_categorical``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


class _HistorySampler(BaseSampler):
    """Shared plumbing: categorical search space from the finished trials, seeded streams."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._space = IntersectionSearchSpace()
        self._places: dict[int, int] = {}

    def _rng(self, study, trial: FrozenTrial, salt: str = "") -> np.random.RandomState:
        return np.random.RandomState(
            [self.seed, self._place(study, trial), zlib.crc32(salt.encode())]
        )

    def _place(self, study, trial: FrozenTrial) -> int:
        """The trial's number less the failed trials before it: a trial failed by a stop, a
        dead worker or the budget's claim rule does not shift the streams of those after it."""
        if trial.number not in self._places:
            failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            before = sum(1 for t in failed if t.number < trial.number)
            self._places[trial.number] = trial.number - before
        return self._places[trial.number]

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        space = self._space.calculate(study)
        return {k: d for k, d in space.items() if isinstance(d, CategoricalDistribution)}

    @staticmethod
    def finished(study) -> list[FrozenTrial]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(trials, key=lambda t: t.number)

    def sample_independent(self, study, trial, param_name, param_distribution):
        """Uniform over the choices (used before the history is long enough, and for new
        parameters)."""
        choices = param_distribution.choices
        return choices[self._rng(study, trial, param_name).randint(len(choices))]


class UniformSampler(_HistorySampler):
    """Uniform random search (Li & Talwalkar 2019's baseline), one seeded stream per trial (unlike
    optuna's ``RandomSampler``, whose one stream per process restarts with each process)."""

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}


def _score(study, value: float) -> float:
    """Higher is better whatever the study's direction."""
    return value if study.direction == StudyDirection.MAXIMIZE else -value


class RegularizedEvolutionSampler(_HistorySampler):
    """Regularised (aging) evolution, Real et al. 2019.

    The population is the ``population_size`` most recently finished trials (so the oldest member
    dies when a child is born); a child is a copy of the best of ``sample_size`` members drawn at
    random, with one decision changed to a different value. Until the population is full, trials
    are sampled uniformly at random.
    """

    def __init__(self, population_size: int = 20, sample_size: int = 5, seed: int = 0):
        super().__init__(seed)
        if not 1 <= sample_size <= population_size:
            raise ValueError("sample_size must be between 1 and population_size")
        self.population_size, self.sample_size = population_size, sample_size

    def sample_relative(self, study, trial, search_space) -> dict:
        history = self.finished(study)
        if not search_space or len(history) < self.population_size:
            return {}
        population = history[-self.population_size :]
        rng = self._rng(study, trial, "evolution")
        contenders = rng.choice(len(population), self.sample_size, replace=False)
        parent = max((population[i] for i in contenders), key=lambda t: _score(study, t.value))
        child = {k: parent.params[k] for k in search_space if k in parent.params}
        if len(child) != len(search_space):
            return {}
        mutable = [k for k in sorted(search_space) if len(search_space[k].choices) > 1]
        if mutable:
            key = mutable[rng.randint(len(mutable))]
            others = [c for c in search_space[key].choices if c != child[key]]
            child[key] = others[rng.randint(len(others))]
        return child


class ReinforceSampler(_HistorySampler):
    """REINFORCE (Williams 1992) over independent categorical decisions, as in NAS-Bench-201.

    The policy holds one logit vector per decision, starting uniform. Each finished trial, in
    order, moves the logits by ``lr * (reward - baseline) * grad log p(choices)``, where the
    baseline is an exponential moving average of past rewards (momentum ``baseline_decay``).
    Rewards are the objective values as reported (e.g. accuracy in percent), sign-flipped for
    minimisation.
    """

    def __init__(self, lr: float = 0.05, baseline_decay: float = 0.9, seed: int = 0):
        super().__init__(seed)
        self.lr, self.baseline_decay = lr, baseline_decay
        self._cache: dict = {}

    def policy(self, study, search_space) -> dict[str, np.ndarray]:
        """The logits after learning from every finished trial (in trial order).

        The replay is cached: when the finished trials extend the ones already replayed (the
        usual case), only the new ones are applied.
        """
        key = (study._study_id, tuple(sorted(search_space)))
        done, logits, baseline = self._cache.get(key, ((), None, None))
        history = [t for t in self.finished(study) if all(k in t.params for k in search_space)]
        numbers = tuple(t.number for t in history)
        if logits is None or numbers[: len(done)] != done:
            done, baseline = (), None
            logits = {k: np.zeros(len(d.choices)) for k, d in search_space.items()}
        logits = {k: v.copy() for k, v in logits.items()}
        for t in history[len(done) :]:
            reward = _score(study, t.value)
            advantage = 0.0 if baseline is None else reward - baseline
            for k, d in search_space.items():
                grad = -_softmax(logits[k])
                grad[d.choices.index(t.params[k])] += 1.0
                logits[k] += self.lr * advantage * grad
            baseline = (
                reward
                if baseline is None
                else self.baseline_decay * baseline + (1 - self.baseline_decay) * reward
            )
        self._cache[key] = (numbers, logits, baseline)
        return logits

    def sample_relative(self, study, trial, search_space) -> dict:
        if not search_space:
            return {}
        logits = self.policy(study, search_space)
        rng = self._rng(study, trial, "reinforce")
        out = {}
        for k in sorted(search_space):
            choices: Sequence = search_space[k].choices
            out[k] = choices[rng.choice(len(choices), p=_softmax(logits[k]))]
        return out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()
