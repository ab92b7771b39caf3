"""`python -m bagmar_cli` runs the same app as the `bagmar` console command."""

from bagmar_cli.cli import main

main()
