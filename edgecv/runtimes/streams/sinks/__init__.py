"""Stream sinks, one module each (see :class:`edgecv.runtimes.streams.result.Sink`)."""
