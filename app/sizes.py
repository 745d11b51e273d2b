"""Byte counts as people read them: the one size formatter for every face and message."""


def human_size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
