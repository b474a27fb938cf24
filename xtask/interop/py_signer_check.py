"""The reference signer (rxon==1.0b17, `rxon.security.sign_payload`) against ours
(`rxon-wire/examples/signer.rs`) on random values: unicode, control characters, big
and negative integers, floats such as 1e-7 and 1e16, nulls in objects and arrays,
nesting up to and past the reference's limit of 30 levels.

Usage: python py_signer_check.py <path to the signer binary> [cases] [seed]
Prints one line per disagreement (at most 20) and a summary; exits 1 on any.
"""

import json
import random
import subprocess
import sys

import orjson
from rxon.security import sign_payload
from rxon.utils import to_dict

BIN = sys.argv[1]
CASES = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 20261202)

ALPHABET = "aZ09_-./ \"\\\n\r\t\b\f\x00\x01\x1f\x7féß€😀\u2028\uffff中"
FLOATS = [0.0, -0.0, 1e-7, 1e-5, 1e-6, 1e16, 1.5e16, 1e15 + 0.5, 0.1, 2.5e-300, 5e-324,
          1.7976931348623157e308, 123456789.125, -3.75, 2.0, 1e300]
INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -2**63, 2**64 - 1, 10**17]


def text():
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


def scalar():
    kind = rng.randint(0, 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-10**6, 10**6)
    if kind == 3:
        return rng.choice(FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 12)
    return text()


def value(depth, max_depth):
    if depth >= max_depth or rng.random() < 0.35:
        return scalar()
    if rng.random() < 0.5:
        return [value(depth + 1, max_depth) for _ in range(rng.randint(0, 4))]
    return {text(): value(depth + 1, max_depth) for _ in range(rng.randint(0, 4))}


def chain(depth):
    """A value nested exactly `depth` levels below the top object."""
    v = 1
    for _ in range(depth - 1):
        v = [v]
    return {"deep": v}


def reference(secret, payload):
    try:
        data = to_dict(payload)
        data.pop("security", None)
        data.pop("_signature", None)
        return sign_payload(payload, secret), orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except (RecursionError, TypeError, ValueError, OverflowError) as e:
        return "ERROR", repr(e)


cases = []
for i in range(CASES):
    payload = {text(): value(1, rng.choice([3, 6, 12])) for _ in range(rng.randint(0, 6))}
    payload["worker_id"] = f"w-{i}"
    if rng.random() < 0.2:
        payload["security"] = {"signature": "x"}
    cases.append(payload)
for depth in (29, 30, 31, 32):
    cases.append(chain(depth))

proc = subprocess.Popen([BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
lines = []
for payload in cases:
    lines.append(json.dumps({"secret": "k-é", "payload": payload}, ensure_ascii=False))
out, _ = proc.communicate("\n".join(lines) + "\n", timeout=120)
answers = out.split("\n")[:-1]  # not splitlines(): U+2028 is inside values
if len(answers) != len(cases):
    print(f"FAIL the signer answered {len(answers)} lines for {len(cases)} cases")
    sys.exit(1)

disagreements = 0
errors_agreed = 0
for payload, answer in zip(cases, answers):
    want_sig, want_canon = reference("k-é", payload)
    if want_sig == "ERROR":
        ok = answer.startswith("ERROR")
        errors_agreed += ok
    else:
        sig, _, canon = answer.partition(" ")
        ok = sig == want_sig and canon == want_canon
    if not ok:
        disagreements += 1
        if disagreements <= 20:
            print(f"DIFF payload={json.dumps(payload, ensure_ascii=False)[:300]}")
            print(f"     reference={want_sig} {want_canon[:300]}")
            print(f"     ours={answer[:300]}")
print(f"signer: {len(cases)} cases, {errors_agreed} refused by both, {disagreements} disagreements")
sys.exit(1 if disagreements else 0)
