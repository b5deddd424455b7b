"""The `bicross` command line: parse, call the library, print."""
