"""Weight inheritance: ``train.init=supernet`` starts the derived network from the supernet.

The search's supernet has trained a weight for every op on every edge; the derived network keeps
one op (or a few) per edge. With ``train.init=supernet`` the network is built at the supernet's
sizes (its space says which: `scinas.spaces.SearchSpace.inherit_sizes`), every tensor of what it
keeps is copied from the supernet (`SearchSpace.inherit_weights`: stem, kept ops, the blocks
between cells, the head), its BatchNorm statistics are recomputed on 10 training batches (the
supernet's were those of a mixture), and it is then fine-tuned with the train section's
settings. The network is scored on the validation split right after inheriting, so the report can
state the discretisation gap: the supernet's validation metric, the inherited network's before
and after fine-tuning, and the from-scratch network's where a run trained one.

Only one-shot strategies in a space with a supernet have weights to inherit; any other
combination and ``search.derive=supernet`` (no derived network) are refused by the config
(`scinas.config.Config`), the ``train`` verb (no search, hence no supernet) by
`refuse_without_search`, both before anything is written. The copying itself is
`scinas.weights.copy_weights`, what a network starts from `scinas.fit.Inheritance`.
"""

from __future__ import annotations

from .errors import UserError

SUPERNET = "supernet"


def inherits(cfg) -> bool:
    return cfg.train.init == SUPERNET


def refuse_without_search(cfg) -> None:
    """The ``train`` verb has a genotype but no supernet to inherit from."""
    if inherits(cfg):
        raise UserError(
            "train.init=supernet needs the supernet a search trained, and `scinas train` starts "
            "from a genotype alone: use `scinas run` (search, then fine-tune), or leave "
            "train.init=scratch."
        )


def train_section(cfg):
    """The train section the final network is built with: the supernet's sizes when it
    inherits from it, else ``cfg.train`` itself."""
    if not inherits(cfg):
        return cfg.train
    from .spaces import SPACES

    return SPACES.get(cfg.search.space).inherit_sizes(cfg.search, cfg.train)
