"""Class names: renaming source classes (``class_map``) and fixing the output order (``classes``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["ClassMapper", "check_class_args"]


def check_class_args(
    class_map: Mapping[str, str] | None, classes: Sequence[str] | None
) -> tuple[dict[str, str], tuple[str, ...] | None]:
    """Validate the two class arguments every reader takes; ``ValueError`` says which is wrong."""
    mapping: dict[str, str] = {}
    if class_map is not None:
        if not isinstance(class_map, Mapping):
            raise ValueError(f"class_map: expected a mapping of source name -> target name, got {type(class_map)}")
        for src, dst in class_map.items():
            if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
                raise ValueError(f"class_map: names must be non-empty strings, got {src!r}: {dst!r}")
            mapping[src] = dst
    fixed: tuple[str, ...] | None = None
    if classes is not None:
        if isinstance(classes, str):
            raise ValueError(f"classes: expected a list of names, got the string {classes!r}")
        fixed = tuple(classes)
        bad = [name for name in fixed if not isinstance(name, str) or not name]
        if bad:
            raise ValueError(f"classes: names must be non-empty strings, got {bad[0]!r}")
        dupes = sorted({name for name in fixed if fixed.count(name) > 1})
        if dupes:
            raise ValueError(f"classes: duplicate names {dupes}")
        if not fixed:
            raise ValueError("classes: expected at least one name")
    return mapping, fixed


class ClassMapper:
    """Turns source class names into 0-based labels.

    Each source name is renamed by ``class_map`` (names it lacks keep their own), then looked up in
    ``classes`` when given (its order is the label order) or else in the renamed ``source_names``
    in order of first appearance (sorted with ``sort``). A name that maps to nothing gets ``None``: an unknown class.
    """

    def __init__(
        self,
        source_names: Iterable[str],
        class_map: Mapping[str, str] | None = None,
        classes: Sequence[str] | None = None,
        *,
        sort: bool = False,
    ) -> None:
        self.class_map, fixed = check_class_args(class_map, classes)
        if fixed is None:
            fixed = tuple(dict.fromkeys(self.rename(name) for name in source_names))
            fixed = tuple(sorted(fixed)) if sort else fixed
        self.classes: tuple[str, ...] = fixed
        self._index = {name: i for i, name in enumerate(self.classes)}

    def rename(self, name: str) -> str:
        return self.class_map.get(name, name)

    def __call__(self, name: str) -> int | None:
        """Label of a source name, or ``None`` when it is not one of the output classes."""
        return self._index.get(self.rename(name))

    def explain_unknown(self, name: str) -> str:
        """Why ``name`` has no label, for the report."""
        target = self.rename(name)
        mapped = f" (mapped to {target!r})" if target != name else ""
        shown = list(self.classes[:10]) + (["..."] if len(self.classes) > 10 else [])
        return f"{name!r}{mapped} is not one of the classes {shown}"
