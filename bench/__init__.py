"""The gate's benchmark suite: ``python -m bench [--quick] [--only GROUP,...]``.

Every figure is a ratio against a baseline measured in the same run, interleaved;
absolute times are this machine's. Groups are modules of this package (``scan``
so far); ``bench/results.json`` holds the last run's figures.
"""
