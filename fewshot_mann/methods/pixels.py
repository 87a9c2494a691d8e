"""scikit-learn baselines on raw pixels, fitted afresh on each episode's support set.

No training phase and nothing learned across episodes: the floor any meta-learner should beat.

    sklearn-knn     1-nearest neighbour by cosine distance of the pixel vectors (on 200
                    5-way 1-shot Vinyals test episodes, 28x28: 48.5 % cosine, 43.5 % Euclidean)
    sklearn-logreg  multinomial logistic regression (L2, C = 1) on the pixel vector
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.base import ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits


@dataclass
class PixelClassifier:
    """A `FewShotClassifier`: a fresh copy of `estimator` is fitted per episode."""

    estimator: ClassifierMixin

    def predict(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        predictions = []
        # one BLAS thread: these fits are tiny (at most 100 x 784), and a multi-threaded BLAS
        # makes them up to 30x slower when the other core is busy
        with threadpool_limits(limits=1):
            for s, labels, q in zip(support.flatten(1, 2).cpu().numpy(),
                                    support_labels.flatten(1).cpu().numpy(), query.cpu().numpy(),
                                    strict=True):
                fitted = clone(self.estimator).fit(s, labels)
                predictions.append(torch.from_numpy(fitted.predict(q)))
        return torch.stack(predictions)


PIXEL_BASELINES: dict[str, PixelClassifier] = {
    "sklearn-knn": PixelClassifier(KNeighborsClassifier(n_neighbors=1, metric="cosine")),
    "sklearn-logreg": PixelClassifier(LogisticRegression(max_iter=1000)),
}
