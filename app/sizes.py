"""Byte counts as people read them: the one size formatter for every face and message."""


def human_size(n: int) -> str:
    """A model or memory size: binary units, GiB from 1 GiB up."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def file_size(n: int) -> str:
    """A text file's size, as file managers show it: decimal kB, MB from 1 MB up."""
    return f"{n / 1000:.0f} kB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"
