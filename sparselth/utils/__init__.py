"""Layer 0: the one measurement protocol (``timing``), the one figure writer (``plot``) and the
record helpers (``records``: JSON-safe numbers, atomic JSON/Markdown, number formatting) that
everything which times, plots or publishes a result uses, ``bench/`` included; and the
collectives of a run on several processes (``distributed``: torchrun, masks decided on rank 0,
checks that the ranks agree)."""
