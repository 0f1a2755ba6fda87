"""Which Source serves a target: `s3://BUCKET[/PREFIX]` is a bucket, anything else a local directory."""
from __future__ import annotations

from ptolemy_tui.core.source import Source
from ptolemy_tui.core.source_local import LocalSource

S3_SCHEME = "s3://"


def is_s3(target: str | None) -> bool:
    return bool(target) and target.startswith(S3_SCHEME)


def source_for(config, root: str | None = None) -> Source:
    """The Source of a project (anything with `target_dir`); `root` (a worker's --source-root) overrides
    where the same tree is found on this host."""
    return LocalSource(root or config.target_dir)
