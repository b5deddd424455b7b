"""`python -m bicross` runs the command line."""

from bicross.cli.app import main

main()
