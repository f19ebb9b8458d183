"""The state machine: states, steps, the engine that applies their outcomes, intake, ownership. No I/O library."""
