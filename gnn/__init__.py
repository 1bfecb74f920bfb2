"""Learning on snapshots of the product graph (features, GNN, calibration) — see issues 3 and 4."""
