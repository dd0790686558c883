"""Deploying a ticket: :func:`compile` runs every layer on its fastest exact route.

* :mod:`~sparselth.deploy.routes`: the registry of exact routes (dense with the mask folded
  in, CSR, channel, block, 2:4), built on :mod:`sparselth.nn.sparse`; a new route is one
  :class:`Route` subclass passed to :func:`register_route`;
* :mod:`~sparselth.deploy.select`: capture each layer's real input, verify every candidate,
  time them with :mod:`sparselth.utils.timing`, choose;
* :mod:`~sparselth.deploy.report`: :class:`CompileReport` and :class:`LayerReport`.

Example::

    fast, report = sparselth.compile(model, ticket, example_inputs=torch.randn(64, 784))
    print(report)
    report.save("compile_report.json")
"""

from .compiler import compile
from .report import CompileError, CompileReport, LayerReport
from .routes import ROUTES, Route, register_route, route_names, unregister_route

__all__ = ["ROUTES", "CompileError", "CompileReport", "LayerReport", "Route", "compile",
           "register_route", "route_names", "unregister_route"]
