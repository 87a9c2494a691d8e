"""Baselines of the comparison report: standard support/query tasks cut from the package's
episodes (`tasks`), raw-pixel scikit-learn classifiers (`pixels`), Prototypical Networks
(`protonet`) and MAML (`maml`) built with learn2learn, their checkpoints and training."""
