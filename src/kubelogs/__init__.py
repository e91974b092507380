"""kubelogs: Kubernetes cluster-level logging in Python.

The public API is deliberately small: the command line is the product. Library users get
the version; everything else is importable from its own module.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
