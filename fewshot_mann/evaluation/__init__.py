"""Evaluation: episodes scored by presentation and shot (scoring.py), a checkpoint on the
held-out classes of its split (heldout.py), and the plots of both."""
