"""The `migrate` command: thin commands over the library, one error mapping."""
