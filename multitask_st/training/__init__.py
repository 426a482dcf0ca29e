"""Training: tokenisation, the collator, task sampling, training arguments, the trainer and
its callbacks, embedding distillation, metrics and the training record."""
