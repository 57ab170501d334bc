"""The trainer's deadline: the epochs left re-planned from the measured ones so that training ends
at ``Trainer.deadline`` (`DeadlinePlanning`, a part of `Trainer`)."""

from __future__ import annotations

import math
import time

from . import parallel


class DeadlinePlanning:
    """`Trainer`'s plan to a deadline: whole epochs and a partial last one that fill it."""

    def steps_in(self, epoch: int) -> int:
        """The steps epoch ``epoch`` (0-based) takes: all of them but in a partial last one."""
        last = epoch == self.epochs - 1 and self.last_steps is not None
        return min(self.n_steps, self.last_steps) if last else self.n_steps

    def planned_steps(self) -> int:
        """The optimiser steps of the whole plan, where the cosine schedule reaches its floor."""
        # closed form: a plan of 10^11 epochs costs no more to count than one of 10
        if self.epochs <= 0:
            return 0
        return (self.epochs - 1) * self.n_steps + self.steps_in(self.epochs - 1)

    def fit_to_deadline(self, done: int) -> None:
        """Re-plan the epochs after the ``done`` first so that the last one ends at ``deadline``,
        from what the epochs of this call took, wall to wall (validation and checkpoint
        included; the first one alone until a second has run, as it carries the warm-up). The
        plan made before training timed a few steps on a throwaway copy, which was 14-45% off
        for ResNets on a 2-core CPU (they used 72-83% of a compare's budget before this).

        The new plan is as many whole epochs as fit, then a partial last one of the steps that
        fit in what is left, once its validation (the epoch's time outside its step loop) is
        paid. Whole epochs alone left up to an epoch unused: 35 s of a 600 s compare run whose
        epochs took 43 s (94% of its budget used). The cosine schedule is stretched or shrunk to
        reach its floor at the new last step.

        A plan that ends less than a quarter of an epoch before the deadline, or within a tenth
        of one after it, is kept, and early on, while 2% of the time left is more than that,
        within 2% of it: a percent of noise in the epoch times over a hundred epochs left does
        not move the plan back and forth (it did, between 107 and 108 epochs of 3.15 s, before
        this tolerance)."""
        ends, loops = self.epoch_ends, self.epoch_loops
        window = slice(1, None) if len(ends) > 2 else slice(0, 1)
        per = (ends[-1] - ends[1]) / (len(ends) - 2) if len(ends) > 2 else ends[1] - ends[0]
        timed = loops[window]
        seconds, steps = sum(x[0] for x in timed), sum(x[1] for x in timed)
        step = seconds / steps if steps else per / self.n_steps  # no loop timed: all steps
        validating = sum(x[2] for x in timed) / len(timed) if timed else 0.0
        # DDP: process 0's clock decides, so that every process plans the same epochs
        per, step, validating, left = parallel.from_rank0(
            (per, step, validating, self.deadline - time.perf_counter())
        )
        if per <= 0 or step <= 0:
            return
        overhead = max(0.0, per - self.n_steps * step)  # validation, checkpoint, hooks
        # testing after training costs about ``finish_passes`` validation passes, as timed in
        # the epochs (not the whole overhead: the guard's snapshot and the checkpoint of a
        # ResNet-10 doubled it); the steps stop that much earlier (the one-batch timing before
        # the run was 1.9x off for it)
        self.finish_seconds = self.finish_passes * validating
        # test-time views (train.tta, or those train.augment=auto finds): a test pass each,
        # and their check on validation
        views = self.finish_views()
        if views and self.finish_passes:
            self.finish_seconds = (self.finish_passes + 1) * (1 + views) * validating
        left -= self.finish_seconds

        def seconds_for(epoch: int) -> float:
            n = self.steps_in(epoch)
            return per if n == self.n_steps else overhead + n * step

        # every epoch left but the last is whole (closed form, whatever the planned count)
        planned = max(0, self.epochs - done - 1) * per + seconds_for(self.epochs - 1)
        unused = left - (planned if self.epochs > done else 0.0)  # < 0: overrun
        slack = 0.02 * max(0.0, left)
        if -max(0.1 * per, slack) <= unused < max(0.25 * per, slack):
            return
        whole = max(0, math.floor(left / per))
        partial = math.floor((left - whole * per - overhead) / step)  # steps of a last epoch
        epochs = done + whole + (partial >= 1)
        last = min(partial, self.n_steps - 1) if partial >= 1 else None
        if (epochs, last) == (self.epochs, self.last_steps):
            return
        before, before_last = self.epochs, self.last_steps
        self.epochs, self.last_steps = epochs, last
        if hasattr(self.hooks, "epochs"):
            self.hooks.epochs = epochs
        self.scheduler.T_max = max(1, self.planned_steps())
        # an event when the count changes, and for the plan of the last epoch; a change of the
        # partial epoch's steps alone before that is not news (epochs of 0.2 s on a loaded
        # machine moved it after most epochs)
        news = epochs != before or (last is None) != (before_last is None) or done >= epochs - 1
        if self.on_event is not None and news:
            of = f", the last one {last} of {self.n_steps} steps" if last else ""
            was = f"{before}" + (f" (the last {before_last} steps)" if before_last else "")
            self.on_event(
                {
                    "event": "budget_replan",
                    "phase": self.phase,
                    "after_epoch": done,
                    "epoch_seconds": per,
                    "step_seconds": step,
                    "epochs_before": before,
                    "epochs": epochs,
                    "last_epoch_steps": last,
                    "steps_per_epoch": self.n_steps,
                    "message": (
                        f"{self.phase}: an epoch takes {per:.2f} s, so {epochs} epochs{of} "
                        f"instead of {was} end at the run's deadline ({left:.0f} s left); "
                        "the learning-rate schedule is fitted to them"
                    ),
                }
            )

    def end_plan(self, done: int) -> None:
        """The run stopped at its deadline after ``done`` epochs: the plan becomes those epochs
        and the last one's record names it. An epoch slower than the measured ones (a loaded
        machine) leaves no time for the epochs planned after it, but its record, written before
        the re-plan that drops them, named them: the history then claimed epochs that never ran."""
        before = self.epochs
        if done < before:  # stopped before the plan's end (the deadline passed mid-plan)
            self.epochs, self.last_steps = done, None
            if hasattr(self.hooks, "epochs"):
                self.hooks.epochs = done
            self.scheduler.T_max = max(1, self.planned_steps())
            if self.on_event is not None:
                self.on_event(
                    {
                        "event": "budget_replan",
                        "phase": self.phase,
                        "after_epoch": done,
                        "epochs_before": before,
                        "epochs": done,
                        "last_epoch_steps": None,
                        "steps_per_epoch": self.n_steps,
                        "message": (
                            f"{self.phase}: the run's time was up after {done} of {before} "
                            "planned epochs (an epoch ran slower than the ones before it)"
                        ),
                    }
                )
        if "epochs" in self.history[-1]:
            self.history[-1]["epochs"] = done

    def past_deadline(self) -> bool:
        """Whether ``deadline`` (less the time kept for testing) has passed (on any process);
        remembered in ``out_of_time``."""
        self.out_of_time = parallel.any_(time.perf_counter() >= self.deadline - self.finish_seconds)
        return self.out_of_time
