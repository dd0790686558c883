"""sparselth's benchmark suites, installed as ``sparselth.bench``.

Each suite is a module with ``main(argv=None)`` that checks every contender against an oracle,
times it with :mod:`sparselth.utils.timing` and writes JSON, Markdown and usually a PNG:
``spmm`` (SpMM against the peers and the bandwidth limit), ``sparse_weights`` (pruned linear
and conv layers), ``sparse_conv`` (sparse convolutions per kept MAC), ``embedding`` (pruned
embedding tables), ``lightgcn_propagation``,
``realised`` (compiled tickets end to end), ``ugs`` (graph lottery tickets), ``ugs_graphs``
(UGS on graph classification over a TU dataset), ``lth_rec`` (recommender lottery tickets),
``graphcl`` (GraphCL pre-training and its evaluation protocols, unsupervised, semi-supervised
and node level: accuracy, not time),
``graphcl_throughput`` (GraphCL pre-training graphs/s against a torch_geometric pipeline) and
``gan_lth`` (GAN lottery tickets: FID per pruning round) and ``fuzz`` (random inputs for every
op, backend and state-dict path in worker processes: mismatches, crashes, hangs). From a checkout run
``python -m bench.<suite> --help``;
installed, ``python -m sparselth.bench.<suite>``.

Results made with a suite's published protocol (its ``PUBLISHED`` arguments) go to
``bench/results/``; any other run goes to ``bench/results/local/`` unless ``--out`` says
otherwise (see :func:`bench.common.result_path`).
"""

SUITES = ("spmm", "sparse_weights", "sparse_conv", "embedding", "lightgcn_propagation",
          "realised", "ugs", "lth_rec", "timing_stability", "sparse_linear_tiles", "spgemm",
          "graphcl", "graphcl_throughput", "gan_lth", "ugs_graphs", "fuzz")
