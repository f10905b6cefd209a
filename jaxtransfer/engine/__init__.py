"""The engine: one run of one task, from its config to its checkpoints.

Run setup, the jitted steps, the training loop, freezing, optimizers, tasks,
initialisation, and the run entry points (`experiment.train`,
`experiment.evaluate`). It knows the features only through the core's
registry (core/registry.py): it names none of them.
"""
