"""mkdocs hooks: the reference pages are generated from the code at every build, never committed."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_reference  # noqa: E402


def on_files(files, config):
    for rel, page in gen_reference.PAGES.items():
        files.append(File.generated(config, rel, content=page()))
    return files
