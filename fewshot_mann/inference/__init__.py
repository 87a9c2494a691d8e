"""Inference on a user's images: the Predictor (predictor.py), what a query's answer leaned on
(explain.py), a model's memory over episodes (inspection.py), calibrated probabilities."""
