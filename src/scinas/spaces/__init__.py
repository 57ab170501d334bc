"""Cell search spaces besides the DARTS space, each with its architecture, network and supernet."""
