"""Datasets: image IO, conversion, synthetic cohorts, fingerprint and planning, preprocessing."""
