"""Ablations, searches and the statistics that compare their runs."""
