"""The image is built with `COPY . .`: what git keeps out as local-only must stay out of the image too."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def entries(name: str) -> set:
    """A file's patterns, written alike: no leading '/' or '**/', no trailing '/'."""
    lines = (line.strip() for line in (ROOT / name).read_text().splitlines())
    return {line.removeprefix("/").removeprefix("**/").rstrip("/") for line in lines
            if line and not line.startswith("#")}


def test_the_build_context_leaves_out_everything_git_ignores():
    """Before, there was no .dockerignore: make run's .local-secrets (the token-signing keys), .venv and .git
    went into an image layer of any build from a checkout that had run."""
    assert entries(".gitignore") - entries(".dockerignore") == set()


def test_the_signing_keys_and_key_files_stay_out_of_the_image():
    assert {".local-secrets", "*service-account*.json", "*.pem", ".env", ".git"} <= entries(".dockerignore")
