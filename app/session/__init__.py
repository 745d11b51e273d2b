"""What a user does: a chat (history + model + params), a completion, a model switch."""
