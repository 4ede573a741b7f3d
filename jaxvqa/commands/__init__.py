"""The `jaxvqa` subcommands, one module each: argument parsing, messages and exit status.

A command module holds no work of its own: it parses, calls the library module named in its
docstring, and turns the outcome into lines on stderr and an exit status. `model_arguments` holds
the options that pick a trained model, which several commands share.

Each module's `subparsers.add_parser(name, help=..., description=...)` and its `add_argument`
calls are declarative data, alike in shape from one command to the next; they stay written out
so that each command's help reads in one place.
"""
