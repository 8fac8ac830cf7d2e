# Rerun: .venv/bin/python results/checks/neighbours_chunk_layer1.py  (CPU, about 5 minutes)
"""Layer 1.0 of the neighbour benchmark: 4,096-neighbour steps with image chunks of 2**20 against
2**22 elements (the default), interleaved, on the first 2,000 test images."""
