"""Independent checks of de-identified DICOM files with pydicom.

Usage: check_deid.py MANIFEST.json

The manifest lists {"name", "input", "output"} pairs. For every pair this script:
  1. parses the output with pydicom (no `force`) and decodes every element, nested ones included;
  2. checks PatientIdentityRemoved, the method code sequence and that the file meta
     MediaStorageSOPInstanceUID equals SOPInstanceUID;
  3. collects the identifying values of the input (person names, identifiers, institution and
     device names, every date in several written formats, instance UIDs) and searches the output
     bytes for them, case-insensitively, in ASCII/UTF-8 and UTF-16;
  4. records how far each date moved, per original PatientID, and how UIDs were mapped.
Across pairs it checks that one patient's dates all moved by one offset, that equal original
UIDs map to equal new UIDs (and different ones to different ones), and that references to an
instance follow the instance's new SOPInstanceUID.

Prints a JSON summary and exits 1 when any check fails.
"""

import datetime
import json
import sys
import warnings

import pydicom
from pydicom.tag import Tag

warnings.filterwarnings("ignore")

ID_KEYWORDS = [
    "PatientID", "OtherPatientIDs", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "StationName", "DeviceSerialNumber", "PatientAddress", "InstitutionalDepartmentName",
    "PerformedProcedureStepID", "RequestedProcedureID", "AdmissionID", "MedicalRecordLocator",
    "PatientTelephoneNumbers", "ReferringPhysicianAddress", "IssuerOfPatientID",
]
INSTANCE_UID_KEYWORDS = [
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "MediaStorageSOPInstanceUID", "IrradiationEventUID",
    "SynchronizationFrameOfReferenceUID", "ConcatenationUID", "DimensionOrganizationUID",
]


# Attributes the profile keeps because they identify no one; an input value that also occurs in
# one of them (e.g. InstitutionName "TOSHIBA" and Manufacturer "TOSHIBA") may legitimately remain.
NON_IDENTIFYING_KEYWORDS = [
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "CodingSchemeDesignator",
    "CodeMeaning", "CodeValue", "Modality", "BodyPartExamined", "ImageType", "ConversionType",
    "SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID", "ScanningSequence",
    "SequenceVariant", "ScanOptions", "MRAcquisitionType", "PhotometricInterpretation",
]


def non_identifying_text(ds):
    parts = []
    for elem in ds.iterall():
        if elem.keyword in NON_IDENTIFYING_KEYWORDS and elem.value not in (None, ""):
            vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
            parts.extend(str(v).upper() for v in vals)
    return "\n".join(parts)


def date_forms(value):
    v = str(value).strip()
    try:
        d = datetime.datetime.strptime(v[:8], "%Y%m%d").date()
    except ValueError:
        return []
    return [
        d.strftime("%Y%m%d"), d.strftime("%Y-%m-%d"), d.strftime("%Y/%m/%d"),
        d.strftime("%d/%m/%Y"), d.strftime("%m/%d/%Y"), d.strftime("%d.%m.%Y"),
        d.strftime("%Y.%m.%d"),
    ]


def phi_values(ds):
    """Identifying values of a data set: (value, kind)."""
    found = set()
    for elem in ds.iterall():
        if elem.tag.group % 2 == 1 and elem.VR not in ("PN", "DA", "DT"):
            continue
        vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
        for v in vals:
            if v is None or v == "":
                continue
            if elem.VR == "PN":
                s = str(v).strip()
                if len(s) >= 4 and s.upper() not in ("ANONYMIZED", "ANONYMOUS"):
                    found.add((s, "name"))
                for part in s.replace("=", "^").split("^"):
                    part = part.strip()
                    if len(part) >= 4:
                        found.add((part, "name-part"))
            elif elem.VR in ("DA", "DT"):
                if str(v).strip()[:8] in ("19000101",):
                    continue
                for f in date_forms(v):
                    found.add((f, "date"))
            elif elem.keyword in ID_KEYWORDS and elem.VR in ("LO", "SH", "ST", "LT", "UT", "CS"):
                s = str(v).strip()
                if len(s) >= 4 and s.strip("0. -"):
                    found.add((s, "identifier"))
            elif elem.keyword in INSTANCE_UID_KEYWORDS:
                s = str(v).strip()
                if len(s) >= 8 and not s.startswith("1.2.840.10008."):
                    found.add((s, "uid"))
    return found


def all_values(ds, keyword):
    out = []
    for elem in ds.iterall():
        if elem.keyword == keyword and elem.value not in (None, ""):
            vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
            out.extend(str(v).strip() for v in vals)
    return out


def top_level_dates(ds):
    out = {}
    for elem in ds:
        if elem.VR == "DA" and elem.tag.group % 2 == 0 and elem.value not in (None, ""):
            try:
                out[elem.tag] = datetime.datetime.strptime(str(elem.value).strip()[:8], "%Y%m%d").date()
            except ValueError:
                pass
    return out


def main():
    manifest = json.load(open(sys.argv[1]))
    failures = []
    patient_offsets = {}
    uid_map = {}
    sop_map = {}
    references = []
    checked = 0
    leaks_searched = 0
    for pair in manifest["pairs"]:
        name = pair["name"]
        raw_out = open(pair["output"], "rb").read()
        try:
            out = pydicom.dcmread(pair["output"])
            for elem in out.iterall():
                _ = elem.value
        except Exception as e:  # noqa: BLE001 - any parse failure is a finding
            failures.append(f"{name}: output does not parse in pydicom: {type(e).__name__}")
            continue
        orig = pydicom.dcmread(pair["input"], force=True)
        checked += 1
        if out.get("PatientIdentityRemoved") != "YES":
            failures.append(f"{name}: PatientIdentityRemoved is not YES")
        codes = [item.CodeValue for item in out.get("DeidentificationMethodCodeSequence", [])]
        if codes != pair.get("expected_codes", codes):
            failures.append(f"{name}: method codes {codes} != {pair['expected_codes']}")
        if out.file_meta.get("MediaStorageSOPInstanceUID") != out.get("SOPInstanceUID") and "SOPInstanceUID" in out:
            failures.append(f"{name}: MediaStorageSOPInstanceUID does not follow SOPInstanceUID")
        # Leaks: the output without its pixel data bytes, in two encodings.
        searchable = raw_out
        if "PixelData" in out:
            searchable = searchable.replace(out.PixelData, b"")
        upper = searchable.upper()
        benign = non_identifying_text(orig)
        for value, kind in phi_values(orig) | {(v, k) for v, k in phi_values(orig.file_meta)}:
            if value.upper() in benign:
                continue
            leaks_searched += 1
            for encoded in (value.upper().encode("utf-8", "ignore"), value.upper().encode("utf-16-le")):
                if encoded and encoded in upper:
                    failures.append(f"{name}: {kind} value of the input found in the output ({len(value)} chars)")
                    break
        # Dates: one offset per patient.
        pid = str(orig.get("PatientID", "") or "").strip()
        od, nd = top_level_dates(orig), top_level_dates(out)
        for tag, d in od.items():
            if tag in nd and tag != Tag("PatientBirthDate"):
                key = pid if pid else f"(no PatientID) {name}"
                patient_offsets.setdefault(key, set()).add((nd[tag] - d).days)
        # UIDs.
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            o, n = orig.get(kw), out.get(kw)
            if o and n:
                o, n = str(o).strip(), str(n).strip()
                if o == n:
                    failures.append(f"{name}: {kw} unchanged")
                if not n.startswith("2.25."):
                    failures.append(f"{name}: {kw} not a 2.25 UID")
                uid_map.setdefault(o, set()).add(n)
                if kw == "SOPInstanceUID":
                    sop_map[o] = n
        ro, rn = all_values(orig, "ReferencedSOPInstanceUID"), all_values(out, "ReferencedSOPInstanceUID")
        if len(ro) == len(rn):
            references.extend(zip(ro, rn))
        else:
            # Some referencing sequences are emptied by the profile (e.g. Referenced Study
            # Sequence, X/Z); what remains must still be remapped.
            for n in rn:
                if n in ro or not n.startswith("2.25."):
                    failures.append(f"{name}: a reference was not remapped")
    for o, n in references:
        uid_map.setdefault(o, set()).add(n)
        if o in sop_map and sop_map[o] != n:
            failures.append("a reference does not follow the referenced instance's new UID")
    for o, ns in uid_map.items():
        if len(ns) != 1:
            failures.append("one original UID mapped to several new UIDs")
    new_to_old = {}
    for o, ns in uid_map.items():
        for n in ns:
            new_to_old.setdefault(n, set()).add(o)
    if any(len(os) > 1 for os in new_to_old.values()):
        failures.append("two original UIDs mapped to one new UID")
    lo, hi = manifest.get("min_days"), manifest.get("max_days")
    for key, offsets in patient_offsets.items():
        if len(offsets) != 1:
            failures.append(f"dates of one patient moved by different offsets: {sorted(offsets)}")
        for off in offsets:
            if lo is not None and not (lo <= off <= hi):
                failures.append(f"date offset {off} outside {lo}..{hi}")
    summary = {
        "checked": checked,
        "values_searched": leaks_searched,
        "patients_with_dates": len(patient_offsets),
        "distinct_offsets": len({o for s in patient_offsets.values() for o in s}),
        "uids_mapped": len(uid_map),
        "references": len(references),
        "failures": failures,
    }
    print(json.dumps(summary, indent=1))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
