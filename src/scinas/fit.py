"""Train the discrete network of an architecture: the final retraining, a black-box candidate's
low-fidelity evaluation, and the timing that plans a time budget all go through `fit`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .budget import Plan, plan_phase
from .data.augment import make_augment
from .data.augment_series import series_augment
from .data.split import stratified_split
from .flops import count_parameters
from .lr_finder import auto_train, log_event
from .precision import maybe_compile
from .rates import is_auto
from .spaces import space_of
from .symmetry import AutoAugment, possible, too_little
from .train import EpochStats, Trainer, evaluate, network_trainer, recalibrate_bn

if TYPE_CHECKING:
    from .run_context import SearchContext


def build_network(arch, t, input_shape, num_outputs) -> torch.nn.Module:
    """The discrete network of an architecture of any space, sized by the train section ``t``."""
    return space_of(arch).build_network(arch, t, tuple(input_shape), num_outputs)


def subset(x, y, n: int | None, seed: int):
    if n is not None and n < len(x):
        _, keep = stratified_split(y.numpy(), n / len(x), seed)
        keep = torch.as_tensor(keep)
        return x[keep], y[keep]
    return x, y


def network_and_augment(s: SearchContext, genotype, t, aug_seed: int):
    """The freshly initialised network of ``genotype`` (seeded, placed) and its training
    augmentation (``auto``'s start: the default one)."""
    data = s.data
    torch.manual_seed(s.cfg.seed)
    net = s.place.module(build_network(genotype, t, data.input_shape, data.num_outputs))
    net = maybe_compile(net, s.cfg.compile)
    aug_generator = torch.Generator().manual_seed(aug_seed)
    return net, train_augment(t, data.input_shape[1:], aug_generator), aug_generator


def train_augment(t, input_hw, generator: torch.Generator):
    """The training augmentation of the train section ``t`` for inputs of ``input_hw``: ``(H,
    W)`` images, or ``(L,)`` series (`scinas.data.augment_series`: none unless asked for).
    ``auto`` starts as ``default`` (`scinas.symmetry.AutoAugment` changes it as it trains)."""
    if len(input_hw) == 1:
        return series_augment(t.augment, generator)
    H, W = input_hw
    return make_augment(
        t.augment,
        H,
        W,
        generator,
        cutout_length=min(t.cutout, min(H, W) // 2),
        crop_padding=t.crop_padding,
        hflip=t.hflip,
    )


def trainer_for(
    s: SearchContext,
    genotype,
    t,
    x,
    y,
    *,
    aug_seed: int,
    on_epoch=None,
    track=None,
    checkpointer=None,
    init=None,
    on_event=None,
    auto_augment=None,
) -> Trainer:
    """The trainer of ``genotype``'s fresh network on (x, y) with the settings of ``t`` (a
    TrainConfig), validating on the val split each epoch: what `fit` runs and
    `plan_training` times. ``init(net)``: what the network starts from instead of its fresh
    weights (`scinas.inherit`); ``on_event``: the divergence guard's and the deadline re-plan's
    records; ``auto_augment``: a `scinas.symmetry.AutoAugment` that chooses the augmentation
    as the network trains (train.augment=auto)."""
    net, augment, aug_generator = network_and_augment(s, genotype, t, aug_seed)
    if init is not None:
        init(net)
    if auto_augment is not None:  # an augmentation name's hook, on the same generator

        def make(name):
            return train_augment(t.model_copy(update={"augment": name}), hw, aug_generator)

        hw, auto_augment.make = s.data.input_shape[1:], make

    trainer = network_trainer(
        net,
        s.task,
        s.place.batches(x, y, t.batch_size, shuffle=True, seed=s.cfg.seed + 31),
        s.place.batches(s.data.val.x, s.data.val.y, 256),
        epochs=t.epochs,
        lr=t.lr,
        lr_min=t.lr_min,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip,
        auxiliary_weight=t.auxiliary_weight if t.auxiliary else 0.0,
        drop_path_prob=t.drop_path_prob,
        augment=augment,
        on_epoch=on_epoch,
        track=track,
        checkpointer=checkpointer,
        generators={"augment": aug_generator},
        steps_per_epoch=t.steps_per_epoch,
        precision=s.network_precision(net),
        optimizer=t.optimizer,
        label_smoothing=t.label_smoothing,
        auto_augment=auto_augment,
    )
    trainer.on_event = on_event
    return trainer


def fit(
    s: SearchContext,
    genotype,
    t,
    x,
    y,
    *,
    on_epoch=None,
    track=None,
    checkpointer=None,
    init_state: dict | None = None,
    init=None,
    on_event=None,
    deadline: float | None = None,
    finish_passes: float = 0.0,
    finish_views=None,
    auto_augment=None,
) -> tuple[torch.nn.Module, list[EpochStats]]:
    """Build the network of ``genotype`` at the sizes of ``t`` (a TrainConfig) and train it from
    scratch on (x, y), validating on the val split each epoch. Returns (net, history). With a
    checkpointer, each epoch is checkpointed and ``s.resume`` continues from the newest one.
    ``init_state``: weights to start from instead of the fresh initialisation (a multi-fidelity
    search's winner, `scinas.strategies.fidelity`); ``init``, ``on_event``: `trainer_for`'s;
    ``deadline``: no step starts after it (`scinas.train.Trainer.deadline`), less the time of
    ``finish_passes`` validation passes as the epochs measure them (the testing after it),
    each times the test-time views ``finish_views()`` says the testing will average;
    ``auto_augment``: `trainer_for`'s."""
    trainer = trainer_for(
        s,
        genotype,
        t,
        x,
        y,
        aug_seed=s.cfg.seed + 21,
        on_epoch=on_epoch,
        track=track,
        checkpointer=checkpointer,
        init=init,
        on_event=on_event,
        auto_augment=auto_augment,
    )
    if init_state is not None:
        load_winner(trainer.model, init_state)
    if s.resume:
        trainer.resume()
    trainer.deadline, trainer.finish_passes = deadline, finish_passes
    if finish_views is not None:
        trainer.finish_views = finish_views
    return trainer.model, [EpochStats(**h) for h in trainer.run()]


def auto_augment(s: SearchContext, t, run) -> AutoAugment | None:
    """train.augment=auto's probe of the data's symmetries for the training of ``t`` (None for
    another augmentation, or data with no view to probe: series, vectors)."""
    views = possible(s.data.input_shape)
    if t.augment != "auto" or not views:
        return None
    ctx = replace(s, run=run)

    def log(e):
        rises = ", ".join(
            f"{v} {f['loss_increase']:+.4f} ± {f['noise']:.4f}" for v, f in e["views"].items()
        )
        first = next(iter(e["views"].values()))
        margin = first["margin"]
        verdict = (
            f"symmetries {', '.join(e['symmetries']) or 'none'}: augment {e['augment']}"
            if e["decided"]
            else "undecided"
            + too_little(first)
            + ("; half the epochs are done: the augmentation stays, no more probes" * e["stops"])
        )
        message = (
            f"train.augment=auto after epoch {e['epoch']}: the validation loss rises by {rises} "
            f"on the views, against a margin of {margin:.4f} over a constant output: {verdict}"
        )
        log_event(ctx, e | {"message": message})

    val = s.place.batches(s.data.val.x, s.data.val.y, 256)
    return AutoAugment(s.task, val, views, z=getattr(s.cfg.search, "noise_z", 2.0), log=log)


def auto_recipe(auto: AutoAugment, results: dict, run) -> dict:
    """What train.augment=auto chose, for results.json: the recipe (``recipe.json`` in the run
    directory, which `scinas.export.load_trained` applies) and when it decided."""
    kept = results.get("tta", {}).get("views", []) if "tta_checks" in results else []
    recipe = {"augment": auto.augment} | ({"tta": kept} if kept else {})
    if run is not None:
        run.write_json("recipe.json", recipe)
    return {
        "recipe": recipe,
        "auto_augment": {"decided_at_epoch": auto.decided_at, "symmetries": auto.symmetries},
    }


def load_winner(net: torch.nn.Module, state: dict) -> None:
    """Load the winner's weights into the final network (which has the candidates' sizes)."""
    target = getattr(net, "_orig_mod", net)
    target.load_state_dict(state)


def plan_training(s: SearchContext, genotype, t, n_train: int) -> Plan:
    """Epochs and steps per epoch that fill ``t.time_budget``, from training steps of
    ``genotype``'s network timed on a throwaway copy (`scinas.budget.plan_phase`)."""
    train = s.data.train
    if is_auto(t.lr):  # no rate changes a step's time
        t = t.model_copy(update={"lr": 0.025})

    def build():
        trainer = trainer_for(s, genotype, t, train.x, train.y, aug_seed=0)
        batch = (s.place.first_batch(train.x, train.y, t.batch_size),)
        return trainer.model, lambda: trainer.train_step(batch, "timing a training step")[0], None

    full = math.ceil(n_train / min(t.batch_size, n_train))
    return plan_phase(
        s, build, budget=t.time_budget, full_epoch_steps=full, key="train.time_budget"
    )


def low_fidelity_objective(s: SearchContext, *, on_epoch=None, checkpointer=None, sizes=None):
    """The score of a black-box candidate: its network (at the supernet's sizes, search.C and
    search.layers) trained ``search.eval_epochs`` epochs on ``search.eval_fraction`` of the
    training split (stratified, the same images for every candidate), scored by the task's
    primary metric on the validation split.

    ``on_epoch``: called with each epoch's stats (a pruner's reports); ``checkpointer()``: the
    candidate's checkpointer or None; ``sizes``: train-section fields that replace the search
    sizes (`scinas.strategies.fidelity.objective_hooks`)."""
    sc, t = s.cfg.search, s.cfg.train
    proxy = t.model_copy(
        update={
            "C": sc.C,
            "layers": sc.layers,
            "reductions": sc.reductions,
            "epochs": sc.eval_epochs,
            "batch_size": sc.batch_size,
            "auxiliary": False,
            "drop_path_prob": 0.0,
            **(sizes or {}),
        }
    )
    train = s.data.train
    n = int(round(len(train) * sc.eval_fraction))
    if sc.max_samples is not None:
        n = min(n, sc.max_samples)
    x, y = subset(train.x, train.y, n, s.cfg.seed)
    pm = s.task.primary_metric

    found = {}  # train.lr=auto: one range test, on the first candidate, sets every one's rate

    def objective(arch):
        ckpt = checkpointer() if checkpointer is not None else None
        if "t" not in found:
            found["t"] = auto_train(
                s,
                lambda tt: trainer_for(s, arch, tt, x, y, aug_seed=0),
                proxy,
                phase="candidates",
            )
        net, history = fit(
            s,
            arch,
            found["t"],
            x,
            y,
            on_epoch=on_epoch,
            checkpointer=ckpt,
            on_event=lambda event: log_event(s, event),
        )
        val = history[-1].val
        return val[pm], {"val": val, "params": count_parameters(net)}

    return objective


class Inheritance:
    """What a network of ``arch`` starts from under ``train.init=supernet`` (`scinas.inherit`):
    the supernet's weights (`SearchSpace.inherit_weights`), then BatchNorm statistics
    recomputed on 10 training batches (`scinas.train.recalibrate_bn`; the supernet's were those
    of a mixture of ops).
    ``score`` also evaluates the network on the validation split as it starts (the
    discretisation gap before fine-tuning), kept in ``val``."""

    def __init__(self, ctx, arch, supernet: torch.nn.Module, x, y, batch_size: int):
        self.ctx, self.arch, self.supernet = ctx, arch, supernet
        self.space = space_of(arch)
        self.bn_batches = ctx.place.batches(x[: 10 * batch_size], y[: 10 * batch_size], batch_size)
        self.val: dict | None = None
        self.copied = 0

    def start(self, net: torch.nn.Module) -> None:
        pairs = self.space.inherit_weights(self.supernet, net, self.arch)
        self.copied = len(pairs)
        recalibrate_bn(net, self.bn_batches)

    def score(self, net: torch.nn.Module) -> None:
        self.start(net)
        data = self.ctx.data
        self.val = evaluate(net, self.ctx.task, self.ctx.place.batches(data.val.x, data.val.y, 256))
        pm = self.ctx.task.primary_metric
        self.ctx.reporter.log(
            f"train.init=supernet: {self.copied} tensors inherited from the supernet; before "
            f"fine-tuning val {pm} {self.val[pm]:.4f}"
        )

    def record(self) -> dict:
        return {"val_at_start": self.val, "tensors": self.copied}
