"""The reference validator (rxon==1.0b17, `rxon.schema.validate_data`, fastjsonschema)
on every vector of `crates/rxon-schema/tests/vectors.json`: its verdict must be the one
the file records, which the Rust test `every_vector_gets_the_reference_verdict` holds
rxon-schema to. Together they prove both validators agree on each vector.

Usage: python py_schema_check.py <path to vectors.json>
Prints one line per disagreement and a summary; exits 1 on any.
"""

import json
import sys

from rxon.schema import validate_data

with open(sys.argv[1], encoding="utf-8") as f:
    vectors = json.load(f)
wrong = 0
for v in vectors:
    ok, message = validate_data(v["instance"], v["schema"])
    if ok != v["valid"]:
        wrong += 1
        print(f"DIFFERS {v['name']}: the file says {v['valid']}, the reference {ok} ({message})")
print(f"schema vectors: {len(vectors) - wrong} of {len(vectors)} as the reference says")
sys.exit(1 if wrong or len(vectors) < 60 else 0)
