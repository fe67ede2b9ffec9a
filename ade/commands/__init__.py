"""Sub-commands of the ``ade`` console script, one module each."""
