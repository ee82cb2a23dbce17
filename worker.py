"""Worker entry point: `python worker.py`."""
from safety_api.worker import main

if __name__ == "__main__":
    main()
