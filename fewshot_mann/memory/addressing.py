"""Addressing functions shared by several memory variants, each written once, batched.

Shapes: B episodes, H heads, N slots, W width. Every function takes and returns batch-first
tensors and never loops over the batch; the reference steps of the variants write the same
equations out for one episode instead (they call only `cosine_rows`, the one-episode cosine),
and tests/test_memories.py checks that both agree and pins each function on hand-computed cases.
The content lookup of the batched forms, C(M, k, beta), is memory/fused.py's ContentWeights.

    least_used               LRUA eq. 21
    circular_pad, shift      NTM eq. 8
    allocation               DNC allocation weighting a_t (usage sorted ascending)
    link_update, precedence_update
                             DNC temporal link matrix L_t and precedence weighting p_t

The cosine is k.M(i) / (|k||M(i)| + eps), eps = model.cosine_eps (1e-8), so that empty slots
read as 0. The gradient with respect to a row M(i) is about
k / (|k||M(i)| + eps), large for nearly empty rows, and early in an episode an LRUA memory is
mostly such rows (at initialisation, rows of norm 6e-4 - 8e-3 over the first steps, written with
read weights of about 1/N). At eps 1e-8 this does two kinds of harm (docs/training.md):
at initialisation the intermediate gradients of an episode grow to 1e18 - 1e20 and the
parameter gradient left where they cancel is float32 rounding noise (29,983 where float64
gives 10.2); later in training it is real: one episode's exact gradient of 1,052 through a row
of norm 3e-4 made up the whole batch gradient of a 15-way run's step, and the update along it
began a collapse from which the run never recovered. eps = 1e-2 bounds both (the same step:
1.2 instead of 16.6) and changed nothing measurable on the 5-way protocol, but the one 15-way
run trained with it from the start left the MANN plateau later and collapsed through another
source (a gradient exploding backward through the controller-memory loop); so 1e-8 stays the
default. What prevented both collapses is a clip near the usual gradient norm (`--grad-clip 1`);
`--skip-grad-spikes` and the divergence guard's rollback protect a run too.
"""

from __future__ import annotations

import torch

TINY = 1e-30  # floor of a weighting raised to the power gamma (NTM eq. 9): 0 ** gamma has
# no finite gradient with respect to gamma


def cosine_rows(memory: torch.Tensor, key: torch.Tensor, eps: float) -> torch.Tensor:
    """One episode, one head: cosine of key (W,) with every row of memory (N, W) -> (N,)."""
    return (memory @ key) / (memory.norm(dim=1) * key.norm() + eps)


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (B, n) of the n smallest usages per row, ties to the lowest index (LRUA eq. 21).

    One int64 key per slot, (float bits of usage) << log2(N) | slot index, instead of sorting:
    usage is >= 0, so its float32 bit pattern orders like the value, and the low bits break ties
    exactly as a stable sort does. The keys are distinct, so the n smallest are one top-k
    (eager), or n argmin passes under torch.compile, which inductor turns into fused reductions
    where it would leave a top-k to ATen's kernel (a measurable share of a large-batch
    compiled training step on a GPU; docs/benchmarks.md).
    """
    slots = usage.shape[-1]
    bits_for_index = max(1, (slots - 1).bit_length())
    bits = usage.detach().float().contiguous().view(torch.int32).to(torch.int64)
    key = (bits << bits_for_index) | torch.arange(slots, device=usage.device)  # (B, N)
    if not torch.compiler.is_compiling():
        return key.topk(n, dim=-1, largest=False, sorted=True).indices
    picks = []
    for _ in range(n):
        picks.append(key.argmin(dim=-1, keepdim=True))  # (B, 1)
        key = key.scatter(-1, picks[-1], torch.iinfo(torch.int64).max)
    return torch.cat(picks, dim=-1)


def circular_pad(weights: torch.Tensor, reach: int) -> torch.Tensor:
    """weights (B, H, N) -> (B, H, N + 2 reach), entry m = w((m - reach) mod N)."""
    return torch.cat([weights[..., weights.shape[-1] - reach:], weights, weights[..., :reach]],
                     dim=-1)


def shift(weights: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """NTM eq. 8, circular convolution w~(i) = sum_j w(j) s(i - j): weights (B, H, N), shifts
    (B, H, 2S+1) a distribution over the offsets -S..S -> (B, H, N). Offset o = k - S takes
    w(i - o), entry i + 2S - k of the padded weights; one multiply-add per offset (a product
    with the windows of the padded weights reduces over a dimension of 2S+1, which is slow)."""
    slots, reach = weights.shape[-1], (shifts.shape[-1] - 1) // 2
    padded = circular_pad(weights, reach)
    shifted = padded[..., 2 * reach:2 * reach + slots] * shifts[..., :1]
    for k in range(1, 2 * reach + 1):
        shifted.addcmul_(padded[..., 2 * reach - k:2 * reach - k + slots], shifts[..., k:k + 1])
    return shifted


def allocation(usage: torch.Tensor) -> torch.Tensor:
    """DNC allocation weighting: with phi the slots sorted by ascending usage (ties to the lower
    index), a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i]. usage (B, N) -> (B, N). The sort
    order is a constant to autograd, as in the paper."""
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)  # (B, N)
    before = torch.cumprod(torch.cat([torch.ones_like(sorted_usage[:, :1]),
                                      sorted_usage[:, :-1]], dim=-1), dim=-1)  # prod_{i<j}
    return torch.zeros_like(usage).scatter(-1, order, (1 - sorted_usage) * before)


def link_update(links: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor
                ) -> torch.Tensor:
    """DNC temporal links, per write head: L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j]
    + w[i] p_{t-1}[j], L_t[i, i] = 0. links (B, Hw, N, N) with a zero diagonal (as every L_t
    has, from L_0 = 0 on), precedence p_{t-1} and write weights w (B, Hw, N) -> (B, Hw, N, N).
    One new N x N tensor, updated in place (a fresh N x N tensor per term costs more than the
    arithmetic); the decayed L_{t-1} keeps its zero diagonal, so only that of w p^T is
    cleared."""
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)  # (B, Hw, N, 1|1, N)
    new = w_i * precedence.unsqueeze(-2)  # (B, Hw, N, N) w[i] p[j]
    new.diagonal(dim1=-2, dim2=-1).zero_()
    return new.addcmul_(links, 1 - w_i).addcmul_(links, w_j, value=-1)


def precedence_update(precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """DNC precedence p_t = (1 - sum_i w[i]) p_{t-1} + w: (B, Hw, N) -> (B, Hw, N)."""
    return (1 - write_weights.sum(dim=-1, keepdim=True)) * precedence + write_weights
