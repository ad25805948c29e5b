"""Registries of the building blocks a config names: activations, norms, inits, optimizers, schedules."""
