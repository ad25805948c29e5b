"""Phase 3's seeds: more paired seeds while the answer is still open (a group-sequential design).

The trials start on --seeds paired seeds. When no proposal beats the original there, but one is
ahead with an interval that reaches below zero, the doctor adds seeds for the original and those
proposals only (doubling the count, up to --max-seeds, 8 x --seeds by default) and looks again,
as long as the budget holds them. On CIFAR-10 (README) LR 0.104 was ahead of 0.01 on all 3
seeds and still "keep", with 6 of the 15 minutes unused; on digits an LR 10x too high collapses
on some seeds only, and 3 and 5 seeds could not tell, 10 could.

Looking again until an interval clears zero would find a "change" that is not there far more
often than one 95% interval does: every look is another chance. So every look's interval is
taken at 1 - 0.05 / K for the K looks planned (Bonferroni): all the looks together err no more
often than one 95% interval, whatever the seeds show and however many looks are taken
(`examples/doctor_seeds_calibration.py` checks it by simulation). Only the looks the budget could
hold are planned (doctor.main), so a look that cannot happen does not widen the others. With
--max-seeds equal to --seeds there is one look, at 95%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.doctor.answer import CONFIDENCE, KEEP, Proposal, decide, percent
from cnnlab.doctor.plan import Clock, budget_text, duration


@dataclass(frozen=True)
class Looks:
    """The seed counts at which the doctor may decide, and each look's interval level."""
    counts: tuple[int, ...]

    @property
    def confidence(self) -> float:
        return 1 - (1 - CONFIDENCE) / len(self.counts)

    def line(self) -> str:
        if len(self.counts) == 1:
            return f"{self.counts[0]} paired seeds, one look (95% intervals)"
        return (f"looks at {', '.join(map(str, self.counts))} paired seeds while an interval "
                f"is open, each at {percent(self.confidence)} (95% over all looks)")


def plan_looks(first: int, most: int) -> Looks:
    """`first` seeds, then doubling, up to `most`: 3 and 12 give 3, 6, 12."""
    counts = [first]
    while counts[-1] < most:
        counts.append(min(most, 2 * counts[-1]))
    return Looks(tuple(counts))


def affordable_looks(first: int, most: int, seconds_left: float, run_seconds: float) -> Looks:
    """plan_looks up to the seeds that `seconds_left` (what the budget holds after the first
    look) could add for the original and one candidate: each planned look widens every look's
    interval, and one the budget cannot reach would widen them for nothing."""
    reachable = first + int(max(0.0, seconds_left) // (2 * run_seconds))
    return plan_looks(first, max(first, min(most, reachable)))


def open_labels(answer: dict, count: int) -> list[str]:
    """The proposals more seeds could settle: ahead of the original on all `count` seeds'
    mean, every seed finished and none stopped by halving, and the interval across zero."""
    return [c["label"] for c in answer["comparisons"]
            if c["n"] == count and not c["pruned"] and c["gain"] is not None and c["gain"] > 0
            and c["ci"][0] is not None and c["ci"][0] <= 0]


def run_rounds(proposals: list[Proposal], seeds: list[int], looks: Looks,
               train: Callable[[list[Proposal], list[int]], bool],
               measured: Callable[[], tuple[dict, dict]], clock: Clock, run_seconds: float,
               say: Callable[[str], None], most: int | None = None) -> dict:
    """Train `proposals` on the first look's seeds, then look and add seeds as above; returns
    the last look's answer (decide's) with `looks` (the seed counts looked at), `complete`
    (False when the budget stopped a round) and `more_seeds` (what the budget could not hold).
    `train(proposals, seeds)` trains those runs that have not finished and says whether all did;
    `measured()` gives (label -> seed -> val_acc, label -> seeds stopped by halving); `most`:
    --max-seeds (default: the last look's count), to say which limit an open answer met."""
    most = most or looks.counts[-1]
    count, active, looked = looks.counts[0], proposals, []
    while True:
        complete = train(active, seeds[:count])
        values, pruned = measured()
        answer = decide(proposals, values, seeds[:count], looks.confidence, pruned)
        looked.append(count)
        answer.update({"looks": looked, "complete": complete, "confidence": looks.confidence,
                       "planned_looks": list(looks.counts)})
        still = open_labels(answer, count)
        if not complete or answer["decision"] != KEEP or not still:
            return answer
        per_seed = (1 + len(still)) * run_seconds
        if len(looked) == len(looks.counts):
            limit = "--max-seeds" if count >= most else "the budget"
            answer["more_seeds"] = (
                f"{_ahead(still, count)}, the last look {limit} allowed when the trials "
                "started; a resumed doctor keeps its looks, so that its intervals keep their "
                "level: to settle it, run the doctor again with a new --out and "
                + ("a larger --max-seeds" if count >= most else
                   f"a larger --budget (--budget {budget_text(clock.used() + count * per_seed)}"
                   " would plan about twice the seeds)"))
            return answer
        wanted = looks.counts[len(looked)] - count
        extra = min(wanted, int(clock.left() // per_seed))
        if extra < 1:
            need = wanted * per_seed
            answer["more_seeds"] = (
                f"{_ahead(still, count)}; {wanted} more paired seed"
                f"{'s' if wanted != 1 else ''} of {'it' if len(still) == 1 else 'them'} and the "
                f"original would take about {duration(need)}: re-run the same command with "
                f"--budget {budget_text(clock.used() + need)} to add them (finished runs are "
                "kept)")
            return answer
        say(f"trials: {', '.join(still)} ahead, interval across zero at {count} seeds; adding "
            f"{extra} paired seed{'s' if extra != 1 else ''} ({extra * (1 + len(still))} runs x "
            f"{duration(run_seconds)})")
        count += extra
        active = [proposals[0]] + [p for p in proposals[1:] if p.label in still]


def _ahead(labels: list[str], count: int) -> str:
    verb = "is" if len(labels) == 1 else "are"
    return f"{', '.join(labels)} {verb} ahead with an interval across zero at {count} seeds"
