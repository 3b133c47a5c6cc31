"""The receiver's core: plain Python that runs the same on Modal and on a laptop."""
