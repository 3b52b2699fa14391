"""``python -m medsynth`` runs the command-line interface."""

from medsynth.cli import main

if __name__ == "__main__":
    main()
