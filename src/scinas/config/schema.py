"""The config schema: one pydantic model per section, checked at the user boundary (every float
finite and within float32, every size within `scinas.bounds`, each strategy's own settings by its
``Settings``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..bounds import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_PIXELS,
    MAX_SAMPLES,
    MAX_SECONDS,
    MAX_STEPS,
)
from ..errors import did_you_mean, unknown
from ..rates import LearningRate
from ..registry import SPACES, STRATEGIES, TASKS
from .values import _SHORT, _finite, _in_float32, _listing, _validated, strategy_keys

if TYPE_CHECKING:
    from ..spaces.base import SpaceSettings
    from ..strategies.base import StrategySettings


class _Section(BaseModel):
    # allow_inf_nan=False: every float setting must be finite ("inf" or ".nan" from a file or
    # --set is refused here, before anything is written, instead of crashing a run later).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _float32(cls, value):
        return _in_float32(value)


class DataConfig(_Section):
    dataset: str = Field(
        "digits",
        description="named dataset, .npz file, idx directory, CSV of image files or a folder of "
        "class subfolders of images",
    )
    data_dir: str | None = Field(None, description="where named datasets live / download to")
    task: str = Field(
        "auto",
        description="a task of the registry (`scinas.tasks.TASKS`, listed by `scinas run --help`), "
        "or auto: detected from the targets (integer labels: classification, floats: "
        "regression, an N×K 0/1 matrix: multilabel)",
    )
    layout: Literal["auto", "nhwc", "nchw", "nhw", "ncl", "nlc", "nl"] = Field(
        "auto",
        description="what x's axes are: images nhwc | nchw (4-D) or nhw (3-D); series ncl | nlc "
        "(3-D, channels first or last) or nl (2-D, one channel). auto: 3-D with a size under 4 "
        "is series (no image side), other 3-D is nhw, 4-D is detected, 2-D is feature vectors",
    )
    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="share of train held out for validation when there is no val split",
    )
    test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="share of the data held out for testing when there is no test split",
    )
    max_val: int | None = Field(
        None,
        ge=2,
        le=MAX_SAMPLES,
        description="cap on the validation split (a stratified subsample; None: all of it); "
        "it is scored after every epoch (lineage decisions: search.decision_val)",
    )
    target_columns: list[str] | None = Field(
        None, description="CSV data: the target columns (None: all but the file and split columns)"
    )
    image_size: str | None = Field(
        None,
        description="image files: 'HxW' to bring every image to (None: all must have one size)",
    )
    fit: Literal["resize", "center_crop"] = Field(
        "resize",
        description="how images reach image_size: resize (bilinear) or center_crop (zero-pads)",
    )
    loss: Literal["mse", "huber"] = Field("mse", description="regression loss")
    output_groups: list[list[int]] | None = Field(
        None,
        description="regression: groups of output indices whose predictions are a probability "
        "vector (softmax within each group, e.g. Galaxy Zoo's answer groups)",
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        if name != "auto" and name not in TASKS:
            raise ValueError(str(unknown("task", name, ["auto", *TASKS.names()])))
        return name


class SearchConfig(_Section):
    """The search section: what every strategy shares. A strategy's own settings (its learning
    rates, budgets, temperatures...) are declared beside it (``Settings`` of each entry of
    `scinas.strategies.STRATEGIES`; `scinas strategies` lists them) and are set with the same
    ``search.KEY`` keys; a setting of another strategy is refused, naming its strategy."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    strategy: str = Field(
        "darts",
        description="the search strategy, one of the registry's: `scinas strategies` lists them",
    )
    space: str = Field(
        "darts", description="the search space, one of the registry's: `scinas spaces` lists them"
    )
    C: int = Field(
        16,
        ge=2,
        le=MAX_CHANNELS,
        description="initial channels of the supernet / candidate networks",
    )
    layers: int = Field(
        8, ge=1, le=MAX_LAYERS, description="cells in the supernet / candidate networks"
    )
    nodes: int = Field(
        4, ge=1, le=MAX_LAYERS, description="darts space: intermediate nodes per cell"
    )
    ops: list[str] | None = Field(
        None,
        description="candidate ops (None: the space's own, as `scinas spaces` lists them)",
    )
    reductions: int | None = Field(
        None,
        ge=0,
        le=MAX_LAYERS,
        description="darts space: reduction cells (None: 2 if size allows)",
    )
    batch_size: int = Field(64, ge=1, le=MAX_BATCH, description="batch size of the search's steps")
    max_samples: int | None = Field(
        None, ge=4, le=MAX_SAMPLES, description="subsample the training set"
    )
    checkpoint_cells: bool | None = Field(
        None,
        description="darts space: recompute cell activations in backward: ~2x less memory, "
        "~1.4x the time. None: on when a step would take over half the free memory "
        "(scinas.memory)",
    )
    augment: Literal["default", "none", "natural", "rotation"] = Field(
        "default",
        description="augmentation of the search's weight and architecture batches: default: as "
        "train.augment (its preset, or its crop_padding and hflip) without cutout; natural or "
        "rotation: that preset; none: off (a supernet on a few thousand unaugmented images "
        "overfits its weight half and drifts to skip connections, docs, concepts 'Robust one-shot "
        "search')",
    )
    derive: str = Field(
        "top2",
        description="darts space: how the discrete cell is read off the alphas (darts, gdas): "
        "topK, ranksA-B, threshold:X, or supernet (keep the trained supernet as the final "
        "model); +none lets 'none' compete. See scinas.spaces.darts.genotype.DeriveRule",
    )
    fixed_reduce: bool = Field(
        False, description="darts space: GDAS' hand-designed reduction cell (gdas, rsws, black-box)"
    )
    time_budget: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds for the search. Black-box: no new candidate after this long; "
        "one-shot: epochs and steps_per_epoch are planned from timed steps to fill it",
    )

    @model_validator(mode="before")
    @classmethod
    def _strategy_settings(cls, data: Any, info: ValidationInfo) -> Any:
        """Validate the keys that are not shared against the chosen strategy's and space's own
        ``Settings`` (defaults filled in). A key of another strategy or space is refused when the
        user set it (``info.context["explicit_search"]``, from `build_config`), and dropped when
        it came from a preset or a file written for another strategy or space."""
        if not isinstance(data, dict):
            return data
        name = data.get("strategy", "darts")
        if not isinstance(name, str) or name not in STRATEGIES:
            return data  # the field's own check names the unknown strategy
        own_default = getattr(STRATEGIES.get(name), "default_space", None)  # receptive: baseline
        data = {"space": own_default or cls.model_fields["space"].default, **data}
        space = data["space"]
        if not isinstance(space, str) or space not in SPACES:
            return data  # the field's own check names the unknown space
        own = STRATEGIES.get(name).Settings
        space_own = SPACES.get(space).Settings
        context = info.context or {}
        explicit = context.get("explicit_search")
        also = tuple(context.get("also_strategies", ()))  # compare runs these too
        shared = {k: v for k, v in data.items() if k in cls.model_fields}
        mine, spaces, kept = {}, {}, {}
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key in own.model_fields:
                mine[key] = value
                continue
            if key in space_own.model_fields:
                spaces[key] = value
                continue
            owners = [n for n in STRATEGIES if key in STRATEGIES.get(n).Settings.model_fields]
            space_owners = [n for n in SPACES if key in SPACES.get(n).Settings.model_fields]
            if not owners and not space_owners:
                raise ValueError(str(unknown("search setting", key, strategy_keys())))
            if also_owner := next((n for n in also if n in owners), None):
                kept[key] = _validated(STRATEGIES.get(also_owner).Settings, {key: value})[key]
                continue  # given or stored (a resumed compare's): the methods that run it use it
            if explicit is None or key not in explicit:
                continue
            if space_owners:
                raise ValueError(
                    f"search.{key}={_SHORT.repr(value)} is a setting of space "
                    f"{_listing(space_owners)}: it applies to the {' and '.join(space_owners)} "
                    f"space only, not to {space} (leave it unset, or set search.space)"
                )
            message = (
                f"search.{key} is a setting of strategy {_listing(owners)}, not of {name}."
                f"{did_you_mean(key, own.model_fields)} {name} has: "
                f"{', '.join(own.model_fields) or 'no settings of its own'} "
                "(`scinas strategies` lists every strategy's settings)"
            )
            if "refused" not in context:
                raise ValueError(message)
            # refused by `check_settings_apply` once the other checks have run: the data,
            # storage and budget errors a user would meet anyway come first, one at a time
            context["refused"].append(message)
        return {
            **shared,
            **_finite(_validated(own, _finite(mine))),
            **_finite(_validated(space_own, _finite(spaces))),
            **_finite(kept),
        }

    # settings of another strategy that the user gave: refused by `check_settings_apply`
    _refused: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("space")
    @classmethod
    def _known_space(cls, name: str) -> str:
        if name not in SPACES:
            raise ValueError(str(unknown("search space", name, SPACES.names())))
        return name

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in STRATEGIES:
            raise ValueError(str(unknown("strategy", name, STRATEGIES.names())))
        return name

    @model_validator(mode="after")
    def _consistent(self):
        """The space checks its own settings, then the strategy checks it can search the space
        (each raises ValueError with the one message the user sees)."""
        space = SPACES.get(self.space)
        space.check_search(self)
        STRATEGIES.get(self.strategy).check_search(self, space)
        return self

    def op_names(self) -> tuple[str, ...]:
        """The candidate ops: ``ops`` or the space's default list."""
        return SPACES.get(self.space).op_names(self)

    @property
    def keeps_supernet(self) -> bool:
        """search.derive=supernet: the trained supernet is the final model (no retraining)."""
        return self.derive.strip() == "supernet"

    def _typed(self, settings: type[BaseModel]):
        """The ``search.KEY`` values that ``settings`` declares, validated by
        `_strategy_settings`, as an instance of it (its defaults for the rest)."""
        extra = self.model_extra or {}
        return settings.model_construct(
            **{k: extra[k] for k in settings.model_fields if k in extra}
        )

    @property
    def space_own(self) -> SpaceSettings:
        """The chosen space's own settings as its typed ``Settings``."""
        return self._typed(SPACES.get(self.space).Settings)

    @property
    def own(self) -> StrategySettings:
        """The chosen strategy's own settings as its typed ``Settings``."""
        return self._typed(STRATEGIES.get(self.strategy).Settings)


class TrainConfig(_Section):
    epochs: int = Field(
        600, ge=1, le=MAX_EPOCHS, description="training epochs (ignored with time_budget)"
    )
    C: int = Field(36, ge=2, le=MAX_CHANNELS, description="initial channels of the final network")
    layers: int = Field(
        20, ge=1, le=MAX_LAYERS, description="cells (or blocks) of the final network"
    )
    reductions: int | None = Field(
        None,
        ge=0,
        le=MAX_LAYERS,
        description="reduction cells of the final network (None: 2 if size allows)",
    )
    batch_size: int = Field(96, ge=1, le=MAX_BATCH, description="training batch size")
    min_epoch_steps: int = Field(
        16,
        ge=0,
        le=MAX_BATCH,
        description="a preset's batch is cut (not below 16) until an epoch of the training set "
        "has this many steps; 0, or a train.batch_size you give, keeps the batch",
    )
    lr: LearningRate = Field(
        0.025,
        description="peak learning rate (SGD, cosine schedule), or auto: found by a range test "
        "on the training data before the phase (scinas.lr_finder)",
    )
    lr_min: float = Field(0.0, ge=0, description="learning rate at the end of the schedule")
    init: Literal["scratch", "supernet"] = Field(
        "scratch",
        description="scratch: the network starts from random weights; supernet: from the "
        "search's supernet weights for the ops it keeps, at the supernet's sizes (search.C, "
        "search.layers, ...), then fine-tunes (one-shot strategies only)",
    )
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd",
        description="sgd: SGD with momentum; adamw: AdamW (betas momentum and 0.999, decoupled "
        "weight decay; give it a rate near 1e-3, e.g. --set train.lr=0.002)",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD's momentum, AdamW's first beta")
    weight_decay: float = Field(3e-4, ge=0, description="weight decay (AdamW's decoupled)")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="classification: share of each target spread over classes"
    )
    grad_clip: float = Field(5.0, gt=0, description="gradient-norm clip")
    auxiliary: bool = Field(
        True, description="auxiliary classifier head after the last reduction cell (DARTS networks)"
    )
    auxiliary_weight: float = Field(0.4, ge=0, description="weight of the auxiliary head's loss")
    drop_path_prob: float = Field(
        0.2, ge=0, lt=1, description="drop-path probability, ramped linearly over the epochs"
    )
    cutout: int = Field(
        16, ge=0, le=MAX_PIXELS, description="cutout square side in pixels (0: off)"
    )
    crop_padding: int | None = Field(
        None, ge=0, le=MAX_PIXELS, description="random-crop padding (None: H/8)"
    )
    hflip: bool = Field(False, description="random horizontal flips (natural images only)")
    augment: Literal["auto", "default", "none", "natural", "rotation", "series"] = Field(
        "auto",
        description="auto: default until the network finds which views keep the labels, then "
        "natural or rotation (`scinas.symmetry`); default: crop_padding/hflip/cutout as "
        "set; natural: crop H/8 + flips; rotation: any angle, both flips, shift 5%, zoom 1.1 "
        "(sky, microscopy); none. Series: auto, default and none are none (a shift can "
        "change what a series means); series: shift ≤ 10% of the length, scale ±10%, jitter 0.03",
    )
    tta: list[Literal["hflip", "vflip", "rot90"]] = Field(
        [],
        max_length=3,
        description="test-time views: predictions averaged over the image and these (mirrors, a "
        "quarter turn of square images), a pass each; set by the lineage and augment=auto",
    )
    max_samples: int | None = Field(
        None, ge=4, le=MAX_SAMPLES, description="subsample the training set"
    )
    time_budget: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds of training: epochs and steps_per_epoch are planned from timed "
        "steps of the network to fill it (train.epochs is then ignored), and re-planned after "
        "each epoch from the measured ones so that training ends within it",
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="cap on steps per epoch (None: the whole split)"
    )

    @model_validator(mode="after")
    def _auto_lr_floor(self):
        if self.lr == "auto" and self.lr_min > 0:
            raise ValueError(
                f"train.lr=auto finds the peak learning rate on the data, but train.lr_min="
                f"{self.lr_min:g} is an absolute rate the found one may lie below, so the "
                "schedule would climb instead of anneal. With lr=auto leave train.lr_min at 0, "
                "or give train.lr as a number"
            )
        return self


class CompareConfig(_Section):
    budget: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds per method and seed: DARTS and random search spend search_share "
        "of it searching and the rest retraining; the ResNets train for all of it. None: DARTS "
        "runs its configured epochs, random search gets the same search time, the ResNets "
        "train.epochs",
    )
    search_share: float = Field(
        0.5, gt=0, lt=1, description="share of compare.budget spent searching"
    )
    model: str | None = Field(
        None,
        description="FILE.py:FUNCTION, your own network as the method model (`scinas compare "
        "--model`); the file runs only when named on the command line, not from a config",
    )


class Config(_Section):
    preset: str = Field("tiny", description="the preset the other defaults came from")
    seed: int = Field(0, ge=0, lt=2**32, description="numpy and torch take seeds below 2**32")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: a CUDA GPU when present, else the CPU"
    )
    channels_last: bool | None = Field(None, description="None: on for CPU, where it is faster")
    deterministic: bool = Field(
        False,
        description="bit-identical reruns and resumes on CUDA (deterministic cuDNN/cuBLAS "
        "kernels, somewhat slower); CPU runs are bit-identical without it",
    )
    report: bool = Field(True, description="write report.html when a run ends (`scinas report`)")
    tensorboard: bool = Field(
        False,
        description="also write TensorBoard scalars to DIR/tensorboard (pip install tensorboard)",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="training steps under autocast: bf16 (CPU or GPU) or fp16 (CUDA only, with a "
        "gradient scaler); second-order DARTS steps, evaluation and metrics stay float32. auto: "
        "bf16 on a CPU with AMX-BF16 for networks mostly of dense convolutions (ResNets), where "
        "it trains them about 2x faster; fp32 otherwise",
    )
    compile: bool = Field(
        False,
        description="torch.compile the network / supernet; refused where torch.compile cannot "
        "work (no C++ compiler on CPU, no Triton on CUDA)",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    @model_validator(mode="after")
    def _inheritance(self):
        """train.init=supernet (scinas.inherit) needs a search that trains a supernet, and a
        derived network to start from it."""
        if self.train.init != "supernet":
            return self
        s = self.search
        strategy, space = STRATEGIES.get(s.strategy), SPACES.get(s.space)
        if strategy.kind != "one-shot" or not space.has_supernet:
            able = [n for n in STRATEGIES if STRATEGIES.get(n).kind == "one-shot"]
            spaces = [n for n in SPACES if SPACES.get(n).has_supernet]
            raise ValueError(
                f"train.init=supernet starts the network from the search's supernet weights, "
                f"but strategy {s.strategy} in the {s.space} space trains no supernet: use a "
                f"one-shot strategy ({', '.join(able)}) in the {' or '.join(spaces)} space, or "
                "leave train.init=scratch"
            )
        if s.keeps_supernet:
            raise ValueError(
                "train.init=supernet fine-tunes the derived network, but search.derive=supernet "
                "keeps the supernet itself as the final model (nothing is derived or trained): "
                "choose one"
            )
        if s.own.returns_earlier_epoch:
            raise ValueError(
                "train.init=supernet starts from the last epoch's supernet weights, but "
                "search.select_epoch=best_val may return an earlier epoch's cell, trained "
                "under other weights (and ops pruned since): choose one"
            )
        return self

    @model_validator(mode="after")
    def _select_epoch(self):
        s = self.search
        if s.own.returns_earlier_epoch and s.keeps_supernet:
            raise ValueError(
                "search.select_epoch=best_val returns an earlier epoch's cell, but "
                "search.derive=supernet keeps the last epoch's supernet itself as the final "
                "model: choose one"
            )
        return self
