"""Code that runs inside the Ray actors: the actor core, FSDP worker, rollout engines, reward worker."""
