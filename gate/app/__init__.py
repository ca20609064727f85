"""The running gate: building lanes and drivers from the config, starting and stopping
them in order (`GateApp`), housekeeping, systemd notify and `gate run`'s daemon."""
