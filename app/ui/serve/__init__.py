"""`tramontane serve`: the HTTP face (llama.cpp /infill and the OpenAI API)."""
