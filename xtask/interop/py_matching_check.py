"""The reference's resource matching (rxon==1.0b17: `Resources.matches`,
`InstalledArtifact.matches`) on every vector of
`crates/rxon-core/tests/it/matching_vectors.json`: its verdict must be the one the file
records, which the Rust test `matching::every_vector_gets_the_reference_verdict` holds
`rxon_core::matching` to.

Usage: python py_matching_check.py <path to matching_vectors.json>
Prints one line per disagreement and a summary; exits 1 on any.
"""

import json
import sys

from rxon.models import InstalledArtifact, Resources
from rxon.utils import from_dict

with open(sys.argv[1], encoding="utf-8") as f:
    vectors = json.load(f)
wrong = 0
for v in vectors:
    worker, needs = v["worker"], v["requirements"]
    ok = from_dict(Resources, worker["resources"]).matches(from_dict(Resources, needs["resources"]))
    mine = [from_dict(InstalledArtifact, a) for a in worker["installed_artifacts"]]
    for want in needs["installed_artifacts"]:
        want = from_dict(InstalledArtifact, want)
        ok = ok and any(m.matches(want) for m in mine)
    if ok != v["matches"]:
        wrong += 1
        print(f"DIFFERS {v['name']}: the file says {v['matches']}, the reference {ok}")
print(f"matching vectors: {len(vectors) - wrong} of {len(vectors)} as the reference says")
sys.exit(1 if wrong or len(vectors) < 25 else 0)
