"""gate: the checkpoint at a residential community's entrance. Rooms: core (the lane),
config, store, app (the running gate), desk (the office's work), ops, drill, web (the
guard's page) and cli (the `gate` command); README.md, "Module map"."""
