"""Compares the crate's table E.1-1 with the tables shipped by the PyPI package
`dicom-anonymizer` (an independent transcription of PS3.15, one module per edition).

Usage: table_crosscheck.py TABLE.toml [EDITION]

Prints a JSON object: the edition compared, tag counts, tags only in one table, and tags whose
Basic Profile action differs. Exit status 0; the calling test decides what is acceptable.
"""

import importlib
import json
import sys
import tomllib

CATEGORIES = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def their_key(t):
    if len(t) == 2:
        return "%04X%04X" % t
    group, element, gmask, emask = t
    digits = ""
    for value, mask in ((group, gmask), (element, emask)):
        for shift in (12, 8, 4, 0):
            digits += "x" if (mask >> shift) & 0xF == 0 else "%X" % ((value >> shift) & 0xF)
    return digits


def main():
    ours_raw = tomllib.load(open(sys.argv[1], "rb"))
    edition = sys.argv[2] if len(sys.argv) > 2 else "2026c"
    mod = importlib.import_module(f"dicomanonymizer.dicom_anonymization_databases.dicomfields_{edition}")
    theirs = {}
    duplicates = []
    for cat, action in CATEGORIES.items():
        for t in getattr(mod, cat):
            k = their_key(t)
            if k in theirs:
                duplicates.append(k)
            theirs[k] = action
    ours = {}
    for row in ours_raw["attribute"]:
        k = row["tag"].upper().replace("X", "x")
        ours[k] = row["basic"]
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    differ = [
        {"tag": k, "ours": ours[k], "theirs": theirs[k]}
        for k in sorted(set(ours) & set(theirs)) if ours[k] != theirs[k]
    ]
    print(json.dumps({
        "edition": edition,
        "ours": len(ours),
        "theirs": len(theirs),
        "their_duplicates": duplicates,
        "only_ours": only_ours,
        "only_theirs": only_theirs,
        "differ": differ,
    }, indent=1))


if __name__ == "__main__":
    main()
