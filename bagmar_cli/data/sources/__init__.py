"""The data sources, one registry (registry.py): importing this package registers every source.

tensors.py holds the prepare step of the in-memory datasets; benchmarks.py and folder.py each hold their own;
options.py the options `bagmar prepare` hands a source and which ones each kind takes.
"""

from bagmar_cli.data.sources import benchmarks, cifar, digits, fashion_mnist, folder  # noqa: F401  (registration)
