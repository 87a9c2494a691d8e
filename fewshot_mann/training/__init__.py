"""Training: a run built from a Config (run.py), the loop every trainable model shares
(loop.py), the sequence models on it (trainer.py), and what guards and spreads it: the
divergence guard, the health probe, distributed processes and CUDA graphs."""
