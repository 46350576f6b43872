"""Layer 0, the foundation: what every room imports and which imports nothing of the project.

`errors` (one base exception with exit codes) and `registry` (one `Registry[T]` for algorithms,
datasets, metrics and task types, with decorators and entry points). `tasks/` and `algorithms/`
import these and nothing else of `suite/`.
"""
