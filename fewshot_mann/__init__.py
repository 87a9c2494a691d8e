"""fewshot-mann: few-shot image classification with Memory-Augmented Neural Networks."""

__version__ = "0.1.0"
