"""Key-value memory of Kaiser et al. 2017, "Learning to Remember Rare Events", sec. 3.

Slots hold a key K[i] (a unit-norm embedding), a value V[i] (a label, here the label code
y in {0, 1}^(G*S)) and an age A[i]. Per step t, with the query q_t = normalize(W_q h_t) from
the controller (`kv_query = "controller"`), or q_t = normalize(W_q e_t) from the encoder's
features e_t of the image x_t (`kv_query = "encoder"`: the paper's query, the network's
last-layer activations; W_q starts as the identity when the memory width equals the feature
width, as a random orthogonal projection otherwise; `freeze_query` keeps it there, so that
the queries are compared in the encoder's own metric, e.g. a frozen ProtoNets CNN's):
    update   the previous query q_{t-1} meets its label y_{t-1} (which the episode reveals
             now, as the previous label). n_1..n_k are its k nearest keys (by q.K[i]) in the
             memory it was read against. If V[n_1] = y:  K[n_1] <- normalize(q + K[n_1]),
             A[n_1] <- 0; else the oldest slot n' (largest age, ties to the lowest index;
             the paper breaks ties at random) is overwritten: K[n'] <- q, V[n'] <- y,
             A[n'] <- 0. Every other age grows by 1.
    loss     with p the most similar of n_1..n_k whose value is y and b the most similar one
             whose value is not (their similarity counted 0 when there is none):
             loss = max(q.K[b] - q.K[p] + alpha, 0) (alpha = `kv_margin`)
    read     r_t = sum_j softmax_j(beta_t q_t.K[n_j]) V[n_j] over q_t's k nearest keys
             (the paper returns V[n_1]; the softmax keeps the read differentiable and
             lets the output layer see the runners-up); beta_t >= 1 as in LRUA
The memory itself takes no gradient (keys are stored detached, as the paper's are
variables outside back-propagation): queries learn through the margin loss and the read.
The margin loss, summed over steps, is `auxiliary_loss(state)`; the MANN exposes it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .base import Interface, Memory, ReferenceMemory, strength_logit


class KVControls(NamedTuple):
    query: torch.Tensor  # (B, W) q_t, unit norm
    strength: torch.Tensor  # (B,) beta_t >= 1
    labels: torch.Tensor  # (B, L) y_{t-1}, all zero at t = 0


class KVState(NamedTuple):
    keys: torch.Tensor  # (B, N, W) K, unit norm (zero while empty)
    values: torch.Tensor  # (B, N, L) V (zero while empty)
    ages: torch.Tensor  # (B, N) A
    query: torch.Tensor  # (B, W) q_{t-1}
    margin_loss: torch.Tensor  # (B,) summed over the steps so far


class KVInterface(Interface):
    def __init__(self, cfg: ModelConfig, input_features: int) -> None:
        from_encoder = cfg.kv_query == "encoder"
        # the controller's part: the query (unless it comes from the encoder), strength logit
        super().__init__(cfg, [()] if from_encoder else [(cfg.memory_width,), ()])
        self.bias_pieces()[-1].fill_(strength_logit(cfg.key_strength_init))
        self.query_projection = None
        if from_encoder:  # W_q (width, E)
            self.query_projection = torch.nn.Linear(input_features, cfg.memory_width, bias=False)
            if input_features == cfg.memory_width:
                torch.nn.init.eye_(self.query_projection.weight)
            else:
                torch.nn.init.orthogonal_(self.query_projection.weight)
            self.query_projection.requires_grad_(not cfg.freeze_query)

    def forward(self, h: torch.Tensor, prev_labels: torch.Tensor, features: torch.Tensor
                ) -> KVControls:
        *query, strength = self.split(h)
        query = query[0] if self.query_projection is None else self.query_projection(features)
        return KVControls(F.normalize(query, dim=-1), 1 + F.softplus(strength), prev_labels)


class KVMemory(Memory):
    def __init__(self, cfg: ModelConfig, label_size: int) -> None:
        super().__init__(cfg, label_size)
        self.heads, self.read_width = 1, label_size
        self.neighbours, self.margin = cfg.kv_neighbours, cfg.kv_margin

    def initial_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVState:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(batch, *shape, device=device, dtype=dtype)

        return KVState(zeros(self.slots, self.width), zeros(self.slots, self.read_width),
                       zeros(self.slots), zeros(self.width), zeros())

    def auxiliary_loss(self, state: KVState) -> torch.Tensor:
        return state.margin_loss


class ReferenceKV(ReferenceMemory, KVMemory):
    def nearest(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Indices (k,) of the k keys most similar to query, ties to the lower index."""
        return torch.sort(keys @ query, descending=True, stable=True).indices[:self.neighbours]

    def episode_step(self, s: KVState, c: KVControls) -> tuple[torch.Tensor, KVState]:
        """One episode: keys (N, W), values (N, L), ages (N,), query (W,), margin_loss ()."""
        keys, values, ages, margin_loss = s.keys, s.values, s.ages, s.margin_loss
        if c.labels.sum() > 0:  # t >= 1: q_{t-1} meets its label y_{t-1}
            near = self.nearest(keys, s.query)
            same = [bool((values[n] == c.labels).all()) for n in near]
            sims = [s.query @ keys[n] for n in near]
            positive = max([sim for sim, ok in zip(sims, same, strict=True) if ok],
                           default=0.0)
            negative = max([sim for sim, ok in zip(sims, same, strict=True) if not ok],
                           default=0.0)
            margin_loss = margin_loss + torch.relu(negative - positive + self.margin)
            slot = int(near[0])
            if same[0]:  # the memory already answers y: K[n_1] <- normalize(q + K[n_1])
                new_key = F.normalize(s.query.detach() + keys[slot], dim=0)
            else:  # overwrite the oldest slot
                slot = int(torch.argmax(ages))
                new_key = s.query.detach()
            keys, values = keys.clone(), values.clone()
            keys[slot], values[slot] = new_key, c.labels
            ages = ages + 1
            ages[slot] = 0.0
        near = self.nearest(keys, c.query)
        weights = torch.softmax(c.strength * (keys[near] @ c.query), dim=0)  # (k,)
        read = weights @ values[near]  # (L,)
        return read.unsqueeze(0), KVState(keys, values, ages, c.query, margin_loss)


class BatchedKV(KVMemory):
    def nearest(self, keys: torch.Tensor, query: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """keys (B, N, W), query (B, W) -> (indices, similarities) (B, k) of the k most similar
        keys, ties to the lower index."""
        sims = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, N)
        near = torch.sort(sims.detach(), dim=-1, descending=True, stable=True).indices
        near = near[:, :self.neighbours]
        return near, sims.gather(1, near)

    def step(self, s: KVState, c: KVControls) -> tuple[torch.Tensor, KVState]:
        labelled = c.labels.sum(-1) > 0  # (B,) t >= 1
        near, sims = self.nearest(s.keys, s.query)  # (B, k)
        near_values = s.values.gather(1, near.unsqueeze(-1).expand(-1, -1, self.read_width))
        same = (near_values == c.labels.unsqueeze(1)).all(-1)  # (B, k)
        hinge = torch.relu(most_similar(sims, ~same) - most_similar(sims, same) + self.margin)
        margin_loss = s.margin_loss + hinge * labelled
        # update: the nearest key if it answers right, else the oldest slot
        answered = same[:, 0]
        slot = torch.where(answered, near[:, 0], torch.argmax(s.ages, dim=-1))  # (B,)
        nearest_key = s.keys.gather(1, near[:, :1, None].expand(-1, -1, self.width))[:, 0]
        query = s.query.detach()
        new_key = torch.where(answered.unsqueeze(-1), F.normalize(query + nearest_key, dim=-1),
                              query)
        slots = torch.arange(self.slots, device=slot.device)  # no F.one_hot: it syncs on CUDA
        chosen = (slots == slot.unsqueeze(-1)) & labelled.unsqueeze(-1)  # (B, N)
        keys = torch.where(chosen.unsqueeze(-1), new_key.unsqueeze(1), s.keys)
        values = torch.where(chosen.unsqueeze(-1), c.labels.unsqueeze(1), s.values)
        ages = torch.where(chosen, 0.0, s.ages + labelled.unsqueeze(-1).to(s.ages))
        # read
        near, sims = self.nearest(keys, c.query)
        weights = torch.softmax(c.strength.unsqueeze(-1) * sims, dim=-1)  # (B, k)
        near_values = values.gather(1, near.unsqueeze(-1).expand(-1, -1, self.read_width))
        reads = torch.bmm(weights.unsqueeze(1), near_values)  # (B, 1, L)
        return reads, KVState(keys, values, ages, c.query, margin_loss)


def most_similar(sims: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The largest of sims (B, k) where allowed (B, k), 0 where nothing is allowed -> (B,)."""
    best = sims.masked_fill(~allowed, torch.finfo(sims.dtype).min).amax(-1)
    return torch.where(allowed.any(-1), best, torch.zeros_like(best))
