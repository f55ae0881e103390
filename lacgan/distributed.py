"""Training on several processes (`torchrun`): one process per device, each holding a share of every step's batch.

The convention is data parallelism with *global* losses: every batch reduction in a loss (a mean over the
batch, a masked mean, a batch-norm statistic) is taken over the whole step's batch, summed across the
processes, so every rank computes the loss value one process would compute on the whole batch. Each rank's
backward pass yields `world` × its share of the gradient (`batch_sum` and `global_sum` below say how), and
`average_gradients` averages them: the update is the single-process update, to float tolerance. Outside a
sharded run (one process, or a process group of one) every helper here is the plain local operation, so
single-process training computes exactly what it computed before this module existed.

    torchrun --standalone --nproc_per_node 2 -m flows.cli train --store S --out RUN   # 2 CPU processes (gloo)
    torchrun --standalone --nproc_per_node 4 -m flows.cli train --device cuda ...      # 4 GPUs (NCCL)

`Shard` says which rows of the step's batch a rank holds; batches, targets and priors are drawn for the whole
batch from (seed, step) and sliced, so a rank's share is a pure function of (seed, step, rank, world) and a
resumed run sees exactly the batches of an uninterrupted one — with any number of processes.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from lacgan.device import pick_device


TIMEOUT_ENV = "LACGAN_DIST_TIMEOUT_S"  # seconds a collective may wait for the other ranks (default 30 min)


@dataclass(frozen=True)
class Shard:
    """Rank `rank` of `world` processes; its rows of a batch of n are `rows(n)` (contiguous, sizes differ by ≤ 1)."""

    rank: int = 0
    world: int = 1

    def rows(self, n: int) -> slice:
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, statistics and samples."""
        return self.rank == 0


SINGLE = Shard()


def sharded() -> bool:
    """True inside a process group of more than one process (the helpers below then reduce across ranks)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def current() -> Shard:
    return Shard(dist.get_rank(), dist.get_world_size()) if sharded() else SINGLE


def launched() -> bool:
    """True when this process was started by torchrun (or any launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str | torch.device | None = None) -> tuple[Shard, torch.device]:
    """Join the launcher's process group (NCCL on CUDA, gloo on CPU) and pick this rank's device: cuda:LOCAL_RANK
    on GPUs. Without a launcher: (SINGLE, `device`, or the one `pick_device` chooses for a name). Idempotent."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if not launched():
        return SINGLE, dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 1800)))
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
    return current(), dev


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if sharded():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. resuming, which may move corrupt checkpoints aside), then the others."""
    shard = current()
    if not shard.main:
        barrier()
    yield
    if shard.main:
        barrier()


# ---- reductions over the whole batch ----------------------------------------------------------------------
# Two sums over the ranks, both with the global value on every rank:
#   batch_sum   gradient stays on this rank (× world, which average_gradients undoes): no collective runs in the
#               backward pass, so it is safe where ranks' graphs differ (LAC-GAN's identity rows live on rank 0
#               only). Right whenever what follows the sum is the same on every rank: sums and means over the
#               batch, and any function of such global sums that ends in the (global) loss, e.g. a Dice ratio.
#   global_sum  gradient summed over the ranks (a collective in the backward pass): for statistics that feed
#               each rank's own rows afterwards, so that the loss's gradient w.r.t. them differs per rank (batch
#               norm). Use it only where every rank builds the same graph, or the ranks' backward collectives
#               could pair up wrongly.
def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """x summed over the ranks (value), with the gradient of `world · x` (see above); x when not sharded."""
    if not sharded():
        return x
    world = dist.get_world_size()
    total = x.detach().clone(memory_format=torch.contiguous_format)
    dist.all_reduce(total)
    local = x * world
    return total + (local - local.detach())  # value: exactly `total` on every rank (a − a = 0 in floats)


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """x summed over the ranks, differentiably: the backward pass sums the ranks' gradients; x when not sharded."""
    return _AllReduceSum.apply(x) if sharded() else x


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the backward pass sums the ranks' gradients (each rank's output feeds its own loss)."""

    @staticmethod
    def forward(ctx, x):
        out = x.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def global_count(n: int | float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A count (rows, pixels, known labels) summed over the ranks, without gradient, as `like`'s dtype/device."""
    t = torch.as_tensor(n, dtype=like.dtype, device=like.device).detach()
    if sharded():
        t = t.clone()
        dist.all_reduce(t)
    return t


def batch_mean(x: torch.Tensor, dims: tuple[int, ...] = (0,)) -> torch.Tensor:
    """x.mean(dims) over the whole step's batch; dims include 0, the batch (an additive term: `batch_sum`)."""
    if not sharded():
        return x.mean(dims)
    n = math.prod(x.shape[d] for d in dims)
    return batch_sum(x.sum(dims)) / global_count(n, x)


def mean_all(x: torch.Tensor) -> torch.Tensor:
    """x.mean() over every element of the whole step's batch (x's dim 0 is the batch; an additive term)."""
    if not sharded():
        return x.mean()
    return batch_sum(x.sum()) / global_count(x.numel(), x).clamp(min=1.0)


# ---- gradients and statistics ---------------------------------------------------------------------------
def average_gradients(params) -> None:
    """Average .grad over the ranks (one flat all-reduce). A parameter without a gradient on every rank keeps
    None (the optimizer skips it, as it would in one process); one with a gradient on some ranks gets zeros on
    the others first."""
    if not sharded():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)  # NCCL
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    if not live:
        return
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in live])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in live:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_equal_check(tensors) -> float:
    """Largest difference of these tensors between rank 0 and this rank (0 when not sharded): replicas drift
    apart only through a bug, and the tests check it."""
    if not sharded():
        return 0.0
    worst = 0.0
    for t in tensors:
        ref = t.detach().clone()
        dist.broadcast(ref, 0)
        worst = max(worst, float((ref - t.detach()).abs().max()) if t.numel() else 0.0)
    return worst


class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training statistics cover the whole step's batch across ranks (differentiably), on
    CPU (gloo) as on CUDA; the plain layer when not sharded or in eval mode. Same parameters and buffers, so
    checkpoints are interchangeable with `nn.BatchNorm2d`'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and sharded()):
            return super().forward(x)
        self._check_input_dim(x)
        n = global_count(x.numel() // x.shape[1], x)
        mean = global_sum(x.sum(dim=(0, 2, 3))) / n
        centred = x - mean[None, :, None, None]
        var = global_sum((centred * centred).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1.0), alpha=m)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every `nn.BatchNorm2d` inside `module` re-classed as this module's `BatchNorm2d`, in place (same tensors)."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = BatchNorm2d
    return module

