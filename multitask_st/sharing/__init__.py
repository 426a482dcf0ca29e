"""Sharing on the Hugging Face Hub: the model card, what a model folder must hold, staging and pushing."""
