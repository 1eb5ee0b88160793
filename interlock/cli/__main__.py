"""`python -m interlock.cli`."""

from interlock.cli import main

main()
