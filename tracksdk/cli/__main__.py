"""``python -m tracksdk.cli``: the ``tracksdk`` command."""

from tracksdk.cli import main

if __name__ == "__main__":
    main()
