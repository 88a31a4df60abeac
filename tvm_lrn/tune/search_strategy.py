"""The search strategy of an LRN task: MetaSchedule's evolutionary search, ended at the
first batch in which it finds nothing new to measure.

An LRN's design space holds a dozen distinct schedules (the strategy rule's variants and
what the generic rules make of a one-axis window), which the first two or three batches
of a task measure. MetaSchedule's evolutionary search only gives a task up after five
batches without a new candidate, and evolving a population of LRN candidates takes
about a minute on two cores: a whole-network tuning run spent half its time (9 of 18
minutes for ZFNet at 16 trials) on such empty batches of its two LRN tasks.
:class:`UntilExhausted` hands the evolutionary search's batches through and ends the
task at the first empty one instead; every other task keeps the plain search. An empty
batch means that one sampled and evolved population held no unmeasured schedule, not
that none is left: a rare variant may go unmeasured, which the strategy rule's own
schedule, always measured first, bounds (a tuned LRN is never slower than the rule).
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

__all__ = ["UntilExhausted"]


@derived_object
class UntilExhausted(ms.search_strategy.PySearchStrategy):
    """A search strategy that runs ``inner`` until it first has no candidate to give.

    Parameters
    ----------
    inner : tvm.s_tir.meta_schedule.search_strategy.SearchStrategy
        The strategy that searches (an ``EvolutionarySearch``).
    """

    def __init__(self, inner: ms.search_strategy.SearchStrategy):
        super().__init__()
        self.inner = inner

    def _initialize_with_tune_context(self, context) -> None:
        self.inner._initialize_with_tune_context(context)

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database, cost_model):
        self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database, cost_model)

    def post_tuning(self) -> None:
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        candidates = self.inner.generate_measure_candidates()
        return None if candidates is not None and len(candidates) == 0 else candidates

    def notify_runner_results(self, measure_candidates, results) -> None:
        self.inner.notify_runner_results(measure_candidates, results)

    def clone(self) -> ms.search_strategy.SearchStrategy:
        return UntilExhausted(self.inner.clone())
