"""A deliberate cross-module type error. `make typecheck` requires mypy to report it, so a checker
that stops resolving the `metaft.*` imports (and so checks nothing across modules) fails the build."""
from metaft.suite.storage import location

location(42)  # an int is not a path: mypy must say so through the installed package
