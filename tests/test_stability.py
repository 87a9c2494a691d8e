"""A source of gradient spikes in LRUA training (issue 10): float32 rounding in the cosine
of nearly empty memory rows, at the cosine's default eps (1e-8).

The gradient of k.m / (|k||m| + eps) with respect to a row m is about k / (|k||m| + eps), large
when m is empty or nearly so; early in an episode an LRUA memory is mostly such rows, and over
a 150-step episode the intermediate gradients grow to 1e18. The parameter gradient is what is
left when they cancel, which float32 cannot represent: on the pinned episode below it comes out
100x its float64 value. `--cosine-eps 1e-3` keeps the intermediates small, and on this episode
float32 then agrees with float64 (it stays an option: memory/addressing.py tells why it is not
the default; scripts/gradient_noise.py measures 512 episodes).
"""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.config import Config, ModelConfig, replace
from fewshot_mann.data.splits import omniglot_split
from fewshot_mann.metrics import episode_loss
from fewshot_mann.models import MANN
from fewshot_mann.run import make_sampler

SPIKING_EPISODE = 32  # of the 64 below: found by computing all 64 at the default eps
BOUNDED_EPS = 1e-3


@pytest.fixture(scope="module")
def episode(omniglot):
    """One santoro 15-way five-hot training episode (150 steps) of real Omniglot images."""
    cfg = replace(Config(), episodes={"n_way": 15, "labels": "five-hot"})
    split = omniglot_split("santoro", omniglot)
    sampler = make_sampler(cfg, omniglot, split.train, side="train", device="cpu", seed=0)
    batch = sampler.sample(64)
    i = slice(SPIKING_EPISODE, SPIKING_EPISODE + 1)
    return batch.images[i], batch.prev_labels[i], batch.targets[i], sampler.code, omniglot


def gradient_norm(episode, cosine_eps: float, dtype: torch.dtype) -> float:
    """The norm of the loss gradient of a freshly initialised paper-size MANN (seed 0)."""
    images, prev, targets, code, omniglot = episode
    torch.manual_seed(0)
    model = MANN(ModelConfig(cosine_eps=cosine_eps), omniglot.image_shape, code).to(dtype)
    episode_loss(model(images.to(dtype), prev.to(dtype)), targets).backward()
    return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))


def test_the_default_eps_gives_float32_gradients_of_rounding_noise(episode):
    eps = ModelConfig().cosine_eps
    float32 = gradient_norm(episode, eps, torch.float32)
    float64 = gradient_norm(episode, eps, torch.float64)
    # if this fails after a change to the sampler or the model's initialisation, the pinned
    # episode no longer spikes: pick another (scripts/gradient_noise.py lists the worst)
    assert float32 > 20 * float64, (float32, float64)


def test_a_bounded_eps_gives_float32_the_float64_gradient(episode):
    float32 = gradient_norm(episode, BOUNDED_EPS, torch.float32)
    float64 = gradient_norm(episode, BOUNDED_EPS, torch.float64)
    # within 2 % (0.3 % measured: ordinary float32 error over 150 steps of sharp reads), where
    # the default eps is off by a factor of 100
    assert float32 == pytest.approx(float64, rel=2e-2)

