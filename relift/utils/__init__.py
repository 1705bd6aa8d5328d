"""Run utilities shared by the trainers and workers: tracking backends, step timers, seeding/RNG
state, optimiser schedules and checkpoint io (each in its own module; import what you need, e.g.
``from relift.utils.tracking import Tracking``)."""
