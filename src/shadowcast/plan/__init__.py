"""Planning: routing, candidate paths, the TE optimiser and plans."""
