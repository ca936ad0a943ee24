"""Profile sources: published latency measurements of devices we cannot measure, imported as profiles.

Each source is one module of this package that registers a function with ``@register_source(name)``; the
function takes the published file and its options and returns a :class:`~hwnas.latency.profile.Profile`
whose metadata says where its numbers came from (``metadata["source"]``). Modules are discovered, so a new
source is one new file.

    from hwnas.latency.sources import import_profile
    profile = import_profile("tinynas", "conv_data.out.fp16", precision="fp16", batch=64, space="imagenet224")
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Callable

from hwnas.errors import ProfileError
from hwnas.latency.profile import Profile
from hwnas.registry import Registry

LICENSE_FILES = ("LICENSE", "NOTICE")  # the source's terms, copied beside the profile

_SOURCES = Registry(__name__)
register_source = _SOURCES.register


def source_names() -> list[str]:
    return _SOURCES.names()


def get_source(name: str) -> Callable:
    build = _SOURCES.get(name)
    if build is None:
        raise ProfileError(f"unknown profile source {name!r}; expected one of: {', '.join(source_names())}")
    return build


def import_profile(name: str, path: str | Path, **options) -> Profile:
    """A profile built by source ``name`` from the published file ``path``; options the source does not take
    are refused, naming those it does."""
    build = get_source(name)
    accepted = [p for p in inspect.signature(build).parameters if p != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ProfileError(f"source {name!r} takes no option {', '.join('--' + u for u in unknown)}; its options: "
                           f"{', '.join('--' + a for a in accepted)}")
    return build(path, **options)


def license_files(path: str | Path) -> list[str]:
    """The license files beside a published file (LICENSE is required: its terms travel with any copy)."""
    folder = Path(path).parent
    found = [name for name in LICENSE_FILES if (folder / name).is_file()]
    if "LICENSE" not in found:
        raise ProfileError(f"no LICENSE beside {path}: the source's license (and NOTICE, if it has one) must travel "
                           "with its measurements; put them in the same folder")
    return found


def save_imported(profile: Profile, target: str | Path, published: str | Path) -> Path:
    """Save a profile imported from the file ``published`` and copy the source's license files from beside that
    file to beside the profile (each named in its metadata)."""
    target = Path(target)
    if (target / "metadata.json").exists():
        raise ProfileError(f"{target} already holds a profile; choose another folder")
    folder = Path(published).parent
    profile.save(target)
    for name in profile.metadata["source"]["license_files"]:
        shutil.copyfile(folder / name, target / name)
    return target
