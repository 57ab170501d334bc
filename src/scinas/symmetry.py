"""Views that keep the data's labels, found by a trained network; predictions averaged over them.

A view T (a mirror, a quarter turn) keeps the labels when T(x) has x's label: galaxies have no
preferred orientation, a mirrored photograph or shoe is still what it was, but a mirrored digit
is another sign. `probe` tests this with a network early in its training, on the validation
split: T keeps the labels when the network keeps nearly all it has learnt on the transformed
images, i.e. its paired loss increase, with z standard errors of noise, stays below a small
fraction (TOLERANCE) of its margin over a constant prediction: an equivalence test with the
burden of proof on the view, so that a weak network or a small split finds nothing. It asks
about the labels, not whether the distribution is symmetric: Fashion-MNIST's shoes all point
left, and a network's loss on mirrored images rises a little after the first epoch, beyond
noise on some trainings and not on others, so a test of symmetry decided the mirror there by
chance; the labels survive on every seed (`benchmarks/augment_probe.py`).

Found views serve twice: as training augmentation (`augment_for`), and at prediction time,
where the network's outputs over the views are averaged (`Symmetrised`; test-time
augmentation). That average cannot be worse in expectation where T is a symmetry of the data
(Jensen); a view that keeps the labels without being one is kept only if the trained network's
validation loss does not rise with it (`scinas.run_end.confirmed_views`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .evaluation import model_output, paired, predict

# the views tried, on (N, C, H, W) batches; rot90 only for square images
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: torch.rot90(x, 1, (-2, -1)),
}
TOLERANCE = 0.2  # a view that keeps the labels costs at most this fraction of the margin
# A view is judged only by a network whose loss is this fraction below a constant output's: a
# network that has learnt next to nothing loses next to nothing on any view, so the tolerance,
# a share of its tiny margin, would be met by views that change the labels.
MIN_LEARNT = 0.1
CONTROL_SEED = 0  # the pixel permutation of the control view (`shuffled`)


def shuffled(x: torch.Tensor) -> torch.Tensor:
    """The control view: the pixels of (N, C, H, W) images moved by one fixed random permutation
    of their positions, each pixel's channels kept together. It keeps the colours and destroys
    every arrangement: a network that loses nothing to it uses nothing a mirror or turn changes."""
    n, c, h, w = x.shape
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(CONTROL_SEED))
    return x.flatten(2)[:, :, perm.to(x.device)].reshape(n, c, h, w)


def too_little(record: dict) -> str:
    """Why a probe ``record`` (any view's) could not judge views, for the log ('' if it could)."""
    if record["learnt"]:
        return ""
    if record["margin"] < MIN_LEARNT * record["constant"]:
        return f" (the network's loss is not {MIN_LEARNT:.0%} below a constant output's yet)"
    return (
        " (the network does not use the images' arrangement yet: shuffling their pixels raises "
        f"its loss by only {record['control_increase']:+.4f} ± {record['control_noise']:.4f})"
    )


def possible(shape: Sequence[int]) -> list[str]:
    """The views that apply to samples of ``shape`` (C, H, W): none for series or vectors."""
    if len(shape) != 3 or min(shape[1:]) < 2:
        return []
    return [v for v in VIEWS if v != "rot90" or shape[1] == shape[2]]


def check_views(views: Sequence[str], shape: Sequence[int]) -> None:
    """Refuse views that do not apply to samples of ``shape``, naming them."""
    ok = possible(shape)
    bad = [v for v in views if v not in ok]
    if bad:
        raise ValueError(
            f"train.tta={list(views)}: {', '.join(bad)} cannot apply to samples of shape "
            f"{tuple(shape)} (views: {', '.join(ok) or 'none'} for this data); set train.tta=[]"
        )


class Symmetrised(nn.Module):
    """``network``'s outputs averaged over the identity and ``views`` (`Task.average_views`)."""

    def __init__(self, network: nn.Module, views: Sequence[str], average: Callable):
        super().__init__()
        self.network = network
        self.views = list(views)
        self.average = average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [model_output(self.network, x)]
        outs += [model_output(self.network, VIEWS[v](x)) for v in self.views]
        return self.average(outs)


def symmetrised(network: nn.Module, views: Sequence[str], task) -> nn.Module:
    """``network`` itself without views, else wrapped in `Symmetrised`."""
    return Symmetrised(network, views, task.average_views) if views else network


@torch.no_grad()
def probe(
    net: nn.Module, batches, task, views: Sequence[str], z: float, plain=None
) -> dict[str, dict]:
    """For each view: the mean per-sample loss increase on the transformed split, its standard
    error, the network's margin over a constant (zero) output, whether the network can judge
    views (``learnt``), and whether the view keeps the labels (``symmetry``): learnt, and the
    increase plus z errors is below TOLERANCE·margin. ``plain``: ``net``'s (outputs, targets)
    on ``batches`` where the caller has them.

    ``learnt``: the margin is at least MIN_LEARNT of the constant output's loss, and the
    network fails the same test on the control view (`shuffled`), its loss rising beyond
    TOLERANCE·margin by more than z errors. A network that uses only what the views keep
    anyway (colour, brightness: what networks learn first) loses nothing to any view, so it
    would pass every one (`benchmarks/augment_probe.py`). The control is scored only where the
    margin suffices (``control_increase`` None otherwise: one validation pass saved)."""
    plain_out, targets = plain if plain is not None else predict(net, batches)
    plain = task.sample_losses(plain_out, targets)
    constant = float(task.sample_losses(torch.zeros_like(plain_out), targets).double().mean())
    margin = constant - float(plain.double().mean())

    def rise(view):
        out, _ = predict(net, ((view(xb), yb) for xb, yb in batches))
        return paired(task.sample_losses(out, targets), plain)

    control = control_se = None
    learnt = margin > 0 and margin >= MIN_LEARNT * constant
    if learnt:
        control, control_se = rise(shuffled)
        learnt = control - z * control_se > TOLERANCE * margin
    found = {}
    for v in views:
        increase, se = rise(VIEWS[v])
        found[v] = {
            "loss_increase": increase,
            "noise": se,
            "margin": margin,
            "constant": constant,
            "control_increase": control,
            "control_noise": control_se,
            "learnt": bool(learnt),
            "symmetry": bool(learnt and increase + z * se <= TOLERANCE * margin),
        }
    return found


def decided(found: dict[str, dict], z: float, current: str = "default") -> bool:
    """Whether a `probe` decided the augmentation: the network can judge views (`probe`'s
    ``learnt``), and the views it left undecided (their cost within noise of the tolerance)
    cannot change what `augment_for` chooses from ``current``: an upside-down view in doubt
    does not hold up a mirror found, while the network, training on, comes to use what the
    mirror changes."""
    margin = next(iter(found.values()))["margin"]
    kept = [v for v, f in found.items() if f["symmetry"]]
    doubt = [
        v
        for v, f in found.items()
        if not f["symmetry"] and f["loss_increase"] - z * f["noise"] <= TOLERANCE * margin
    ]
    learnt = next(iter(found.values()))["learnt"]
    return learnt and augment_for(kept, current) == augment_for(kept + doubt, current)


def decides(found: dict[str, dict], z: float, current: str, last: bool) -> bool:
    """Whether `AutoAugment` chooses the augmentation at a `probe`: a network that can judge
    views, and every view `decided` or (``last``) half the epochs done."""
    learnt = next(iter(found.values()))["learnt"]
    return learnt and (last or decided(found, z, current))


def augment_for(symmetries: Sequence[str], current: str) -> str:
    """The augmentation family for the found symmetries: any orientation (``rotation``) when
    both mirrors and the quarter turn are, ``natural`` (crop + mirror) when the left-right
    mirror is; else ``current``. Never weaker than ``current``."""
    found = set(symmetries)
    if {"hflip", "vflip", "rot90"} <= found:
        return "rotation"
    if "hflip" in found and current in ("default", "none"):
        return "natural"
    return current


class AutoAugment:
    """``train.augment=auto``: the training starts with the default augmentation, and after each
    epoch the network being trained probes which views keep the labels (`probe`) until it has
    decided every view (`decided`) or half the epochs are done; then the augmentation becomes
    `augment_for` the views found, for the rest of the
    training, and those views are the test-time views (confirmed on the trained network at the
    end, `scinas.run_end.confirmed_views`). A network that has not learnt enough to judge views
    (`probe`'s ``learnt``) decides nothing, and at half the epochs stops probing and keeps the
    augmentation it has (``decided_at`` set, no symmetries). ``log(record)`` receives each
    probe's record;
    ``make(name)`` (set by the trainer's builder) is the augmentation hook of an augmentation
    name."""

    def __init__(self, task, val_batches, views: Sequence[str], z: float = 2.0, log=None):
        self.task, self.val_batches, self.views, self.z = task, val_batches, list(views), z
        self.log, self.make = log, None
        self.augment, self.symmetries, self.decided_at = "default", [], None

    def hook(self):
        """The augmentation hook of the augmentation chosen so far."""
        return self.make(self.augment)

    @property
    def decided(self) -> bool:
        return self.decided_at is not None or not self.views

    def end_epoch(self, model: nn.Module, epoch: int, epochs: int, plain=None) -> bool:
        """Probe after epoch ``epoch`` (1-based) of ``epochs`` (``plain``: the model's outputs
        and targets on the validation split, if the trainer has them); True when the
        augmentation changes now."""
        if self.decided:
            return False
        found = probe(model, self.val_batches, self.task, self.views, self.z, plain)
        last = 2 * epoch >= epochs
        if not decides(found, self.z, self.augment, last):
            if last:  # still unable to judge: a choice from here on comes too late to pay
                self.decided_at = epoch
            self._log(epoch, found, None)
            return False
        self.decided_at = epoch
        self.symmetries = [v for v in self.views if found[v]["symmetry"]]
        before, self.augment = self.augment, augment_for(self.symmetries, self.augment)
        self._log(epoch, found, self.augment)
        return self.augment != before

    def _log(self, epoch: int, found: dict, augment: str | None) -> None:
        if self.log is not None:
            self.log(
                {
                    "event": "augment_probe",
                    "epoch": epoch,
                    "views": found,
                    "decided": augment is not None,
                    "symmetries": self.symmetries if augment is not None else None,
                    "augment": augment,
                    "stops": self.decided_at == epoch and augment is None,  # gave up at half
                }
            )

    def state_dict(self) -> dict:
        return {"augment": self.augment, "symmetries": self.symmetries, "at": self.decided_at}

    def load_state_dict(self, state: dict) -> None:
        self.augment, self.symmetries = state["augment"], list(state["symmetries"])
        self.decided_at = state["at"]
