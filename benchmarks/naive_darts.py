"""A same-run reference for `search_step.py`: a DARTS search step built the way the original DARTS
search code is built (Liu et al., 2019), written here from the paper and from the profile in the
foundation issue, not copied. Only the benchmark uses it; scinas never does.

What makes it the "before" of `scinas.spaces.darts.supernet` (each point is one the issue's
profile names):

* every edge computes all 8 ops, `none` too (zeros times its weight), and sums ``w * op(x)`` into
  fresh full-size temporaries;
* every conv op applies its own ReLU to the edge input (the same ReLU up to 4 times per edge);
* pooling ops are followed by a BatchNorm (affine=False), as in the original;
* contiguous NCHW tensors throughout (no channels-last);
* the architecture step back-propagates into the weights as well (nothing frozen);
* second order: the unrolled model is a new network built and loaded for every step, and the
  Hessian-vector product takes two more forward/backward passes of the training batch.

The ops themselves are scinas' own (`scinas.ops.create_op`, with ``relu_in=True``), so both
sides run the same convolutions, but run as plain modules (`plain_autograd`): torch's autograd
keeps every intermediate and oneDNN computes every convolution gradient, as in the original code;
scinas' recomputing depthwise->1×1 function and output-keeping BatchNorm are switched off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scinas.ops import DARTS_OPS, DilConv, FactorizedReduce, LeanBatchNorm2d, ReLUConvBN, create_op

STEPS, MULTIPLIER = 4, 4


def plain_autograd(module: nn.Module) -> nn.Module:
    """Run scinas' ops as the plain torch modules they are made of (see the module docstring)."""
    for m in module.modules():
        if isinstance(m, LeanBatchNorm2d):
            m.__class__ = nn.BatchNorm2d
        elif isinstance(m, DilConv):
            m.forward = nn.Sequential.forward.__get__(m)
    return module


class NaiveMixedOp(nn.Module):
    def __init__(self, C: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in DARTS_OPS:
            op = create_op(name, C, stride, affine=False, relu_in=True)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.ops.append(plain_autograd(op))

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class NaiveCell(nn.Module):
    def __init__(self, C_pp, C_p, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.pre0 = plain_autograd(FactorizedReduce(C_pp, C, affine=False))
        else:
            self.pre0 = plain_autograd(ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.pre1 = plain_autograd(ReLUConvBN(C_p, C, 1, 1, 0, affine=False))
        self.edges = nn.ModuleList()
        for i in range(STEPS):
            for j in range(2 + i):
                self.edges.append(NaiveMixedOp(C, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights):
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(STEPS):
            s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-MULTIPLIER:], dim=1)


class NaiveNetwork(nn.Module):
    def __init__(self, C: int, num_classes: int, layers: int, in_channels: int = 3):
        super().__init__()
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C)
        )
        C_pp, C_p, C_cur = 3 * C, 3 * C, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_cur *= 2
            self.cells.append(NaiveCell(C_pp, C_p, C_cur, reduction, reduction_prev))
            reduction_prev = reduction
            C_pp, C_p = C_p, MULTIPLIER * C_cur
        self.classifier = nn.Linear(C_p, num_classes)
        n_edges = sum(2 + i for i in range(STEPS))
        # plain tensors outside parameters(), as in the original
        self.alphas = [
            (1e-3 * torch.randn(n_edges, len(DARTS_OPS))).requires_grad_(True) for _ in range(2)
        ]

    def arch_parameters(self):
        return self.alphas

    def new(self):
        other = NaiveNetwork(self.C, self.num_classes, self.layers)
        for a, b in zip(other.alphas, self.alphas, strict=True):
            a.data.copy_(b.data)
        return other

    def forward(self, x):
        s0 = s1 = self.stem(x)
        w_normal = F.softmax(self.alphas[0], dim=-1)
        w_reduce = F.softmax(self.alphas[1], dim=-1)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)


class NaiveArchitect:
    """The architecture step: first order (val loss backward through everything) or second order
    (unrolled model rebuilt, finite-difference Hessian-vector product)."""

    def __init__(self, model: NaiveNetwork, order: int, momentum=0.9, weight_decay=3e-4):
        self.model, self.order = model, order
        self.momentum, self.weight_decay = momentum, weight_decay
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3
        )

    def step(self, x_train, y_train, x_val, y_val, eta, w_optimizer):
        self.optimizer.zero_grad()
        if self.order == 1:
            self.model.loss(x_val, y_val).backward()
        else:
            self._unrolled_backward(x_train, y_train, x_val, y_val, eta, w_optimizer)
        self.optimizer.step()

    def _unrolled_backward(self, x_train, y_train, x_val, y_val, eta, w_optimizer):
        model = self.model
        params = list(model.parameters())
        loss = model.loss(x_train, y_train)
        theta = torch.cat([p.data.view(-1) for p in params])
        try:
            moment = torch.cat(
                [w_optimizer.state[p]["momentum_buffer"].view(-1) for p in params]
            ).mul_(self.momentum)
        except KeyError:
            moment = torch.zeros_like(theta)
        dtheta = torch.cat([g.view(-1) for g in torch.autograd.grad(loss, params)])
        dtheta = dtheta + self.weight_decay * theta
        unrolled = model.new()
        state, offset = model.state_dict(), 0
        new_theta = theta - eta * (moment + dtheta)
        for k, v in model.named_parameters():
            n = v.numel()
            state[k] = new_theta[offset : offset + n].view(v.size())
            offset += n
        unrolled.load_state_dict(state)
        unrolled.loss(x_val, y_val).backward()
        dalpha = [a.grad for a in unrolled.arch_parameters()]
        vector = [p.grad.data for p in unrolled.parameters()]
        implicit = self._hessian_vector_product(vector, x_train, y_train)
        for g, ig in zip(dalpha, implicit, strict=True):
            g.data.sub_(eta * ig.data)
        for a, g in zip(model.arch_parameters(), dalpha, strict=True):
            a.grad = g.data.clone()

    def _hessian_vector_product(self, vector, x, y, r=1e-2):
        model = self.model
        R = r / torch.cat([v.view(-1) for v in vector]).norm()
        for p, v in zip(model.parameters(), vector, strict=True):
            p.data.add_(v, alpha=R)
        grads_p = torch.autograd.grad(model.loss(x, y), model.arch_parameters())
        for p, v in zip(model.parameters(), vector, strict=True):
            p.data.sub_(v, alpha=2 * R)
        grads_n = torch.autograd.grad(model.loss(x, y), model.arch_parameters())
        for p, v in zip(model.parameters(), vector, strict=True):
            p.data.add_(v, alpha=R)
        return [(a - b).div_(2 * R) for a, b in zip(grads_p, grads_n, strict=True)]
