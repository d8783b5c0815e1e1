"""Live and file streams: source → capture thread (policy ``latest`` | ``every``) → pre-process →
infer → post-process → sinks, one pipeline for every source (see :mod:`.result` for the types
every stage shares). Torch-free, like the rest of :mod:`edgecv.runtimes`."""
