"""Model backends behind one protocol, and the prompt formats they use."""
