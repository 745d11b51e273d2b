"""The llama.cpp backend: the model runs in a spawned worker process."""
