"""Figures and pages made from results; nothing here trains."""
