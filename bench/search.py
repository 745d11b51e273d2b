"""`models search` on the local hub fixture: 20 repositories of GGUF files (the starters under
20 names), searched through the real `tramontane` command; the time, and the bytes of headers
read per file (range requests), cold and then from the cache.

    python bench/search.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.models import starters  # noqa: E402
from bench.common import starter_path, table, write  # noqa: E402
from tests.fixtures.hub_server import HubServer  # noqa: E402


def main() -> None:
    smol = starters.smollm2_path()
    assert smol is not None, "make install puts the SmolLM2 starter in place"
    qwen = starter_path("qwen2.5-coder-1.5b-instruct")
    files = {f"org{i:02d}/chat-model-{i:02d}-GGUF/chat-model-{i:02d}.Q4_K_M.gguf":
             (qwen if i % 5 == 0 else smol) for i in range(20)}
    rows = []
    with HubServer(files) as hub:
        for i, key in enumerate(files):  # 20 different files, as far as any cache can tell
            hub.published_sha256[key] = f"{i:064x}"
        for path in set(files.values()):  # the hub has its ETags; the fixture hashes once, here
            hub.sha256(path)
        home = tempfile.mkdtemp(prefix="tram-search-")
        env = os.environ | {"HF_ENDPOINT": hub.url, "TRAMONTANE_HOME": home}
        # the machine's figures are measured once per machine (1.6 s of memory bandwidth), by
        # whatever command first predicts a speed; measured here before the clock starts
        subprocess.run([sys.executable, "-m", "app", "models", "list"], env=env,
                       capture_output=True, check=True)
        for run in ("cold", "cached"):
            before, asked = hub.served_bytes, len(hub.requests)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "app", "models", "search", "chat",
                                  "model", "--limit", "20", "--json"], env=env,
                                 capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            found = json.loads(out.stdout)
            served = hub.served_bytes - before
            rows.append({"run": run, "results": len(found["rows"]), "seconds": round(wall, 2),
                         "search_s": found["seconds"],
                         "header_MB_total": round(served / 2**20, 1),
                         "header_MB_per_file": round(served / 2**20 / len(found["rows"]), 2),
                         "requests": len(hub.requests) - asked})
        shutil.rmtree(home, ignore_errors=True)
    print("models search, 20 repositories on the local hub fixture (16 SmolLM2, 4 Qwen 1.5B "
          "headers, each published as a different file), the command's whole run; cold: no "
          "header or search kept, the machine's figures known")
    print(table(rows))
    print(f"wrote {write('search', {'rows': rows})}")


if __name__ == "__main__":
    main()
