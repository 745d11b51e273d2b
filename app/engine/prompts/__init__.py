"""Prompt formats: data plus pure functions, tested without a model."""
