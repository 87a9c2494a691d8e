"""Memory equations as autograd Functions with a written-out backward pass.

On a CPU at small batches a training step costs what its operations cost to launch, not what
they compute (docs/benchmarks.md): autograd records every element-wise operation of a time
step and runs one or more kernels for each backward. Each Function here computes a group of
equations of the batched memories and its gradient in a few batched kernels, and saves only
what that gradient needs:

    ContentWeights  C(M, k, beta) = softmax over slots of beta cos(M, k): LRUA eqs. 17-18,
                    NTM eqs. 5-6, DNC content lookup
    Locate          NTM eqs. 7-9: interpolation with w_{t-1}, circular shift, sharpening
    EraseAndAdd     M_t = M_{t-1} o prod_h (E - w_h e_h^T) + sum_h w_h a_h^T: NTM eqs. 3-4,
                    the DNC's write
    TemporalLinks   DNC temporal linkage: L_t, p_t and the directional weightings
                    f^i_t = L_t w^{r,i}_{t-1}, b^i_t = L_t^T w^{r,i}_{t-1} (Graves et al. 2016,
                    Methods, "Temporal memory linkage")
    NTMStep         a whole NTM step (ntm.py), composed of the above: one autograd node
    DNCAccess       a DNC step after allocation (dnc.py): write weighting, write, links, read
                    weighting, read: one autograd node

Each Function is `equations(*inputs) -> (outputs, saved)`, the forward written once, and
`gradients(saved, *output_grads) -> input grads`; the steps call their parts' `equations` and
`gradients`. Under autocast (bf16) `run` lets autograd differentiate `equations` instead, so
that autocast picks each operation's precision as everywhere else (hence no in-place update of
a matrix product's result in `equations`: under autocast the two may differ in dtype).
tests/test_fused.py checks every `gradients` against autograd through `equations` in float64;
tests/test_memories.py checks the memories against their reference forms.

Matrix-vector products are written with the vector as a row, (1, N) @ (N, N)^T, never as a
column: on the CPU the column form of a batched product runs a kernel about 6x slower.

Shapes: B episodes, H heads, N slots, W width, R read heads, Hw write heads.
"""

from __future__ import annotations

from typing import Any

import torch

from .addressing import TINY, circular_pad, link_update, precedence_update, shift

Grad = torch.Tensor | None


class FusedFunction(torch.autograd.Function):
    """An autograd Function given by `equations` and `gradients` (see the module doc)."""

    @staticmethod
    def equations(*inputs: Any) -> tuple[Any, tuple[torch.Tensor, ...]]:
        raise NotImplementedError

    @staticmethod
    def gradients(saved: tuple[torch.Tensor, ...], *grads: Grad) -> tuple[Grad, ...]:
        raise NotImplementedError

    @classmethod
    def forward(cls, ctx: Any, *inputs: Any) -> Any:
        outputs, saved = cls.equations(*inputs)
        ctx.save_for_backward(*saved)
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        return outputs

    @classmethod
    def backward(cls, ctx: Any, *grads: Grad) -> tuple[Grad, ...]:
        return cls.gradients(ctx.saved_tensors, *grads)

    @classmethod
    def run(cls, *inputs: Any) -> Any:
        """The outputs, differentiable: through `gradients`, or through autograd under
        autocast."""
        device = next(x for x in inputs if isinstance(x, torch.Tensor)).device.type
        if torch.is_autocast_enabled(device):
            return cls.equations(*inputs)[0]
        return cls.apply(*inputs)


def _plus(a: Grad, b: Grad) -> Grad:
    """The sum of two gradients, either of them possibly absent (None)."""
    return b if a is None else a if b is None else a + b


def _inverse(norm: torch.Tensor) -> torch.Tensor:
    """1 / norm, 0 where the norm is 0: the gradient of a norm at the zero vector is 0, as
    autograd takes it."""
    return norm.reciprocal().masked_fill_(norm == 0, 0.0)


class ContentWeights(FusedFunction):
    """memory (B, N, W), keys (B, H, W), strengths (B, H), eps -> weights (B, H, N):
    softmax over slots of beta cos, cos = k.M(i) / (|k| |M(i)| + eps) (memory/addressing.py)."""
    saved_count = 8

    @staticmethod
    def equations(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor,
                  eps: float) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        memory_norm, key_norm = memory.norm(dim=-1), keys.norm(dim=-1)  # (B, N), (B, H)
        denominator = (memory_norm.unsqueeze(1) * key_norm.unsqueeze(-1)).add_(eps)
        cos = torch.bmm(keys, memory.transpose(1, 2)) / denominator  # (B, H, N)
        strengths = strengths.unsqueeze(-1)
        weights = torch.softmax(cos * strengths, dim=-1)
        return weights, (memory, keys, strengths, memory_norm, key_norm, denominator, cos,
                         weights)

    @staticmethod
    def gradients(saved: tuple[torch.Tensor, ...], grad: Grad) -> tuple[Grad, ...]:
        memory, keys, strengths, memory_norm, key_norm, denominator, cos, weights = saved
        if grad is None:
            return None, None, None, None
        # softmax: d/dz = w o (g - <g, w>), z = beta cos
        grad_z = (grad - (grad * weights).sum(-1, keepdim=True)).mul_(weights)
        # cos = k.M(i) / (|k| |M(i)| + eps): d/d(k.M(i)) = 1 / denominator,
        # d/d|k| = -cos |M(i)| / denominator, d/d|M(i)| = -cos |k| / denominator
        grad_dot = (grad_z * strengths).div_(denominator)  # (B, H, N)
        grad_norms = grad_dot * cos
        # rows (B, 1, H) and (B, 1, N): sum_i grad_norms[h, i] |M(i)|, sum_h grad_norms[h, i] |k_h|
        key_shrink = torch.bmm(memory_norm.unsqueeze(1), grad_norms.transpose(1, 2))
        memory_shrink = torch.bmm(key_norm.unsqueeze(1), grad_norms)
        grad_memory = torch.bmm(grad_dot.transpose(1, 2), keys).addcmul_(
            memory, (memory_shrink * _inverse(memory_norm).unsqueeze(1)).transpose(1, 2),
            value=-1)
        grad_keys = torch.bmm(grad_dot, memory).addcmul_(
            keys, (key_shrink * _inverse(key_norm).unsqueeze(1)).transpose(1, 2), value=-1)
        return grad_memory, grad_keys, (grad_z * cos).sum(-1), None


class Locate(FusedFunction):
    """NTM eqs. 7-9 for a group of heads: content weights w^c, previous weights w_{t-1}
    (B, H, N), gates g (B, H), shifts s (B, H, 2S+1), sharpening gamma (B, H) -> w_t."""
    saved_count = 9

    @staticmethod
    def equations(content: torch.Tensor, previous: torch.Tensor, gates: torch.Tensor,
                  shifts: torch.Tensor, gamma: torch.Tensor
                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        gates, gamma = gates.unsqueeze(-1), gamma.unsqueeze(-1)
        gated = torch.lerp(previous, content, gates)  # eq. 7: g w^c + (1 - g) w_{t-1}
        shifted = shift(gated, shifts)  # eq. 8
        powered = shifted.clamp_min(TINY).pow(gamma)  # eq. 9
        total = powered.sum(dim=-1, keepdim=True)
        weights = powered / total
        return weights, (content - previous, gates, shifts, gamma, gated, shifted, powered,
                         total, weights)

    @staticmethod
    def gradients(saved: tuple[torch.Tensor, ...], grad: Grad) -> tuple[Grad, ...]:
        difference, gates, shifts, gamma, gated, shifted, powered, total, weights = saved
        if grad is None:
            return None, None, None, None, None
        # eq. 9: w = P / sum P, P = max(w~, TINY)^gamma: dP/dgamma = P log max(w~, TINY),
        # dP/dw~ = gamma P / w~ where w~ >= TINY (0 below: the clamp)
        grad_p_times_p = (grad - (grad * weights).sum(-1, keepdim=True)).div_(total).mul_(powered)
        clamped = shifted.clamp_min(TINY)
        grad_gamma = (grad_p_times_p * clamped.log()).sum(-1)
        grad_shifted = (grad_p_times_p.div_(clamped).mul_(gamma)
                        .masked_fill_(shifted < TINY, 0.0))
        # eq. 8, w~(i) = sum_o s(o) w(i - o): d/dw(j) = sum_o s(o) g(j + o),
        # d/ds(o) = sum_i g(i) w(i - o)
        slots, reach = gated.shape[-1], (shifts.shape[-1] - 1) // 2
        padded_grad, padded = circular_pad(grad_shifted, reach), circular_pad(gated, reach)
        grad_gated = padded_grad[..., :slots] * shifts[..., :1]
        for k in range(1, 2 * reach + 1):  # offset k - S: g(j + k - S), entry j + k
            grad_gated.addcmul_(padded_grad[..., k:k + slots], shifts[..., k:k + 1])
        grad_shifts = torch.stack([(grad_shifted * padded[..., 2 * reach - k:2 * reach - k + slots]
                                    ).sum(-1) for k in range(2 * reach + 1)], dim=-1)
        grad_content = grad_gated * gates  # eq. 7
        return (grad_content, grad_gated - grad_content, (grad_gated * difference).sum(-1),
                grad_shifts, grad_gamma)


class EraseAndAdd(FusedFunction):
    """memory M_{t-1} (B, N, W), write weights w (B, Hw, N), erase e and add a (B, Hw, W) ->
    M_t = M_{t-1} o prod_h (E - w_h e_h^T) + sum_h w_h a_h^T (B, N, W)."""
    saved_count = 6

    @staticmethod
    def equations(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor,
                  add: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        factors = 1 - weights.unsqueeze(-1) * erase.unsqueeze(-2)  # (B, Hw, N, W)
        kept = factors[:, 0] if weights.shape[1] == 1 else factors.prod(dim=1)  # (B, N, W)
        written = memory * kept + torch.bmm(weights.transpose(1, 2), add)
        return written, (memory, weights, erase, add, factors, kept)

    @staticmethod
    def gradients(saved: tuple[torch.Tensor, ...], grad: Grad) -> tuple[Grad, ...]:
        memory, weights, erase, add, factors, kept = saved
        if grad is None:
            return None, None, None, None
        heads = weights.shape[1]
        grad_weights = torch.bmm(add, grad.transpose(1, 2))  # (B, Hw, N), the added part
        through = grad * memory  # d M_t / d factor_h = M_{t-1} o prod_{h' != h} factor_h'
        grad_erase = []
        for h in range(heads):
            through_h = through
            for other in range(heads):
                if other != h:
                    through_h = through_h * factors[:, other]
            grad_weights[:, h] -= torch.bmm(erase[:, h:h + 1], through_h.transpose(1, 2))[:, 0]
            grad_erase.append(torch.bmm(weights[:, h:h + 1], through_h))
        return (grad * kept, grad_weights, torch.cat(grad_erase, dim=1).neg_(),
                torch.bmm(weights, grad))


class TemporalLinks(FusedFunction):
    """links L_{t-1} (B, Hw, N, N), precedence p_{t-1} and write weights w^w_t (B, Hw, N), the
    previous read weights w^r_{t-1} (B, R, N) -> L_t, p_t, and the forward and backward
    weightings of every read head through every write head's links (B, Hw, R, N), row i
    (L_t w^{r,i}_{t-1})^T and (L_t^T w^{r,i}_{t-1})^T.

    The gradient with respect to L_t, an N x N matrix per write head, is formed once: the
    gradients of f and b add to it as one batched product, and besides it the backward reads
    only L_{t-1} and L_t (which the next step saves anyway)."""
    saved_count = 5

    @staticmethod
    def equations(links: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                  read_weights: torch.Tensor) -> tuple[Any, tuple[torch.Tensor, ...]]:
        new_links = link_update(links, precedence, write_weights)
        previous = read_weights.unsqueeze(1)  # (B, 1, R, N)
        forward = previous @ new_links.transpose(-1, -2)  # (B, Hw, R, N)
        backward = previous @ new_links
        return ((new_links, precedence_update(precedence, write_weights), forward, backward),
                (links, new_links, precedence, write_weights, read_weights))

    @staticmethod
    def gradients(saved: tuple[torch.Tensor, ...], grad_links: Grad, grad_precedence: Grad,
                  grad_forward: Grad, grad_backward: Grad) -> tuple[Grad, ...]:
        links, new_links, precedence, w, read_weights = saved
        previous = read_weights.unsqueeze(1).expand(-1, w.shape[1], -1, -1)  # (B, Hw, R, N)
        grad_forward = torch.zeros_like(previous) if grad_forward is None else grad_forward
        grad_backward = torch.zeros_like(previous) if grad_backward is None else grad_backward
        # f = L r, b = L^T r: dL[i, j] += g_f[i] r[j] + r[i] g_b[j], summed over read heads,
        # one product of (N, 2R) by (2R, N) matrices; dr = g_f L + g_b L^T
        left = torch.cat([grad_forward, previous], dim=-2).transpose(-1, -2)  # (B, Hw, N, 2R)
        right = torch.cat([previous, grad_backward], dim=-2)  # (B, Hw, 2R, N)
        grad = (left @ right if grad_links is None else
                torch.baddbmm(grad_links.flatten(0, 1), left.flatten(0, 1), right.flatten(0, 1)
                              ).view_as(grad_links))  # (B, Hw, N, N)
        grad_read = (grad_forward @ new_links + grad_backward @ new_links.transpose(-1, -2)
                     ).sum(dim=1)  # (B, R, N)
        # L_t = (1 - w[i] - w[j]) L_{t-1} + w[i] p[j], the second term off the diagonal only
        # (L_{t-1} has a zero diagonal: so has L_t)
        w_i, w_j = w.unsqueeze(-1), w.unsqueeze(-2)
        decayed = grad * links
        diagonal = grad.diagonal(dim1=-2, dim2=-1)  # (B, Hw, N)
        grad_w = ((precedence.unsqueeze(-2) @ grad.transpose(-1, -2)).squeeze(-2)
                  - diagonal * precedence - decayed.sum(-1) - decayed.sum(-2))  # (B, Hw, N)
        grad_p = (w_j @ grad).squeeze(-2) - diagonal * w
        # d/dL_{t-1} = (1 - w[i] - w[j]) dL_t, into the product's memory (no new N x N tensor)
        grad_old_links = torch.mul(grad, 1 - w_i, out=decayed).addcmul_(grad, w_j, value=-1)
        if grad_precedence is not None:  # p_t = (1 - sum_i w[i]) p_{t-1} + w
            grad_w = (grad_w + grad_precedence
                      - (grad_precedence * precedence).sum(-1, keepdim=True))
            grad_p = grad_p + grad_precedence * (1 - w.sum(-1, keepdim=True))
        return grad_old_links, grad_p, grad_w, grad_read


def _parts(saved: tuple[torch.Tensor, ...], *functions: type[FusedFunction]
           ) -> list[tuple[torch.Tensor, ...]]:
    """A composed Function's saved tensors cut into those of its parts, in order."""
    parts, start = [], 0
    for function in functions:
        parts.append(saved[start:start + function.saved_count])
        start += function.saved_count
    return parts


class NTMStep(FusedFunction):
    """A batched NTM step (ntm.py): memory M_{t-1} (B, N, W), weights w_{t-1} (B, Hw+R, N),
    the controls of NTMControls, the number of write heads and the cosine's eps -> reads
    (B, R, W), M_t, w_t. The write heads address M_{t-1} (eqs. 5-9) and write (eqs. 3-4),
    then the read heads address M_t and read (eq. 2)."""
    parts = (ContentWeights, Locate, EraseAndAdd, ContentWeights, Locate)

    @staticmethod
    def equations(memory: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor,
                  strengths: torch.Tensor, gates: torch.Tensor, shifts: torch.Tensor,
                  sharpening: torch.Tensor, erase: torch.Tensor, add: torch.Tensor,
                  write_heads: int, eps: float) -> tuple[Any, tuple[torch.Tensor, ...]]:
        sizes = [write_heads, weights.shape[1] - write_heads]
        keys, strengths, gates, shifts, sharpening, previous = (
            x.split(sizes, dim=1) for x in (keys, strengths, gates, shifts, sharpening, weights))
        content, saved_content = ContentWeights.equations(memory, keys[0], strengths[0], eps)
        write, saved_write = Locate.equations(content, previous[0], gates[0], shifts[0],
                                              sharpening[0])
        written, saved_written = EraseAndAdd.equations(memory, write, erase, add)
        content, saved_read_content = ContentWeights.equations(written, keys[1], strengths[1],
                                                               eps)
        read, saved_read = Locate.equations(content, previous[1], gates[1], shifts[1],
                                            sharpening[1])
        return ((torch.bmm(read, written), written, torch.cat([write, read], dim=1)),
                (*saved_content, *saved_write, *saved_written, *saved_read_content,
                 *saved_read))

    @classmethod
    def gradients(cls, saved: tuple[torch.Tensor, ...], grad_reads: Grad, grad_memory: Grad,
                  grad_weights: Grad) -> tuple[Grad, ...]:
        content, write, written, read_content, read = _parts(saved, *cls.parts)
        memory_t, read_weights = read_content[0], read[-1]
        heads = write[-1].shape[1]
        grad_write = grad_read = None
        if grad_weights is not None:
            grad_write, grad_read = grad_weights[:, :heads], grad_weights[:, heads:]
        if grad_reads is not None:  # eq. 2: r = w M_t
            grad_read = _plus(grad_read, torch.bmm(grad_reads, memory_t.transpose(1, 2)))
            grad_memory = _plus(grad_memory, torch.bmm(read_weights.transpose(1, 2),
                                                       grad_reads))
        grad_read_content, *read_controls = Locate.gradients(read, grad_read)
        grad_memory_t, *read_keys = ContentWeights.gradients(read_content, grad_read_content)
        grad_memory, grad_written, grad_erase, grad_add = EraseAndAdd.gradients(
            written, _plus(grad_memory, grad_memory_t))
        grad_content, *write_controls = Locate.gradients(write, _plus(grad_write,
                                                                      grad_written))
        grad_memory_prev, *write_keys = ContentWeights.gradients(content, grad_content)
        # read_controls / write_controls: previous weights, gates, shifts, sharpening;
        # read_keys / write_keys: keys, strengths, None (eps)
        joined = [torch.cat(pair, dim=1) for pair in zip(write_controls, read_controls,
                                                         strict=True)]
        return (_plus(grad_memory, grad_memory_prev), joined[0],
                torch.cat([write_keys[0], read_keys[0]], dim=1),
                torch.cat([write_keys[1], read_keys[1]], dim=1), *joined[1:], grad_erase,
                grad_add, None, None)


class DNCAccess(FusedFunction):
    """A batched DNC step after usage and allocation (dnc.py): memory M_{t-1} (B, N, W), links
    L_{t-1} (B, Hw, N, N), precedence p_{t-1} (B, Hw, N), read weights w^r_{t-1} (B, R, N), the
    allocation weightings a_t (B, Hw, N), the write and read controls of DNCControls and the
    cosine's eps -> reads (B, R, W), M_t, L_t, p_t, w^r_t, w^w_t."""
    parts = (ContentWeights, EraseAndAdd, TemporalLinks, ContentWeights)

    @staticmethod
    def equations(memory: torch.Tensor, links: torch.Tensor, precedence: torch.Tensor,
                  read_weights: torch.Tensor, allocation: torch.Tensor, write_keys: torch.Tensor,
                  write_strengths: torch.Tensor, erase: torch.Tensor,
                  write_vectors: torch.Tensor, allocation_gates: torch.Tensor,
                  write_gates: torch.Tensor, read_keys: torch.Tensor,
                  read_strengths: torch.Tensor, read_modes: torch.Tensor, eps: float
                  ) -> tuple[Any, tuple[torch.Tensor, ...]]:
        content, saved_content = ContentWeights.equations(memory, write_keys, write_strengths,
                                                          eps)
        # w^w_t = g^w [g^a a_t + (1 - g^a) c^w_t]    (B, Hw, N)
        g_a, g_w = allocation_gates.unsqueeze(-1), write_gates.unsqueeze(-1)
        write_weights = g_w * (g_a * allocation + (1 - g_a) * content)
        written, saved_written = EraseAndAdd.equations(memory, write_weights, erase,
                                                       write_vectors)
        (new_links, new_precedence, forward, backward), saved_links = TemporalLinks.equations(
            links, precedence, write_weights, read_weights)
        content, saved_read_content = ContentWeights.equations(written, read_keys,
                                                               read_strengths, eps)
        # the read modes pi (backward x Hw, content, forward x Hw) weigh the 2 Hw + 1
        # weightings of each read head: (B, R, 1, 2 Hw + 1) @ (B, R, 2 Hw + 1, N)
        candidates = torch.cat([backward.transpose(1, 2), content.unsqueeze(2),
                                forward.transpose(1, 2)], dim=2)
        new_read_weights = (read_modes.unsqueeze(-2) @ candidates).squeeze(-2)  # (B, R, N)
        reads = torch.bmm(new_read_weights, written)  # r^i_t = M_t^T w^{r,i}_t
        return ((reads, written, new_links, new_precedence, new_read_weights, write_weights),
                (*saved_content, *saved_written, *saved_links, *saved_read_content,
                 allocation, allocation_gates, write_gates, read_modes, candidates,
                 new_read_weights))

    @classmethod
    def gradients(cls, saved: tuple[torch.Tensor, ...], grad_reads: Grad, grad_memory: Grad,
                  grad_links: Grad, grad_precedence: Grad, grad_read_weights: Grad,
                  grad_write_weights: Grad) -> tuple[Grad, ...]:
        content, written, links, read_content = _parts(saved, *cls.parts)
        allocation, allocation_gates, write_gates, read_modes, candidates, read_weights = \
            saved[sum(part.saved_count for part in cls.parts):]
        memory_t, heads = read_content[0], allocation.shape[1]
        if grad_reads is not None:
            grad_read_weights = _plus(grad_read_weights,
                                      torch.bmm(grad_reads, memory_t.transpose(1, 2)))
            grad_memory = _plus(grad_memory, torch.bmm(read_weights.transpose(1, 2), grad_reads))
        grad_modes = grad_forward = grad_backward = grad_read_content = None
        if grad_read_weights is not None:
            grad_modes = (grad_read_weights.unsqueeze(-2) @ candidates.transpose(-1, -2)
                          ).squeeze(-2)  # (B, R, 2 Hw + 1)
            grad_candidates = read_modes.unsqueeze(-1) * grad_read_weights.unsqueeze(-2)
            grad_backward = grad_candidates[:, :, :heads].transpose(1, 2)  # (B, Hw, R, N)
            grad_read_content = grad_candidates[:, :, heads]
            grad_forward = grad_candidates[:, :, heads + 1:].transpose(1, 2)
        grad_memory_t, grad_read_keys, grad_read_strengths, _ = ContentWeights.gradients(
            read_content, grad_read_content)
        grad_old_links, grad_old_precedence, grad_write_links, grad_old_read = \
            TemporalLinks.gradients(links, grad_links, grad_precedence, grad_forward,
                                    grad_backward)
        grad_memory, grad_write_written, grad_erase, grad_vectors = EraseAndAdd.gradients(
            written, _plus(grad_memory, grad_memory_t))
        grad_write = _plus(_plus(grad_write_weights, grad_write_links), grad_write_written)
        # w^w = g^w [g^a a + (1 - g^a) c^w]
        g_a, g_w, write_content = (allocation_gates.unsqueeze(-1), write_gates.unsqueeze(-1),
                                   content[-1])
        grad_mix = grad_write * g_w
        grad_content = grad_mix * (1 - g_a)
        grad_memory_prev, grad_write_keys, grad_write_strengths, _ = ContentWeights.gradients(
            content, grad_content)
        return (_plus(grad_memory, grad_memory_prev), grad_old_links, grad_old_precedence,
                grad_old_read, grad_mix * g_a, grad_write_keys, grad_write_strengths,
                grad_erase, grad_vectors, (grad_mix * (allocation - write_content)).sum(-1),
                (grad_write * (g_a * allocation + (1 - g_a) * write_content)).sum(-1),
                grad_read_keys, grad_read_strengths, grad_modes, None)


def content_weights(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """softmax over slots of strength x cosine: memory (B, N, W), keys (B, H, W), strengths
    (B, H) -> weights (B, H, N)."""
    return ContentWeights.run(memory, keys, strengths, eps)
