"""The ``hwnas`` command line: a thin layer over the library."""
