"""Reference metadata of DICOM files from pydicom, as JSON lines (one object per input path).

Used by the test suite to cross-check Bedside's metadata extraction with an independent reader.
Usage: python dicom_metadata.py FILE [FILE ...]
"""

import hashlib
import json
import sys

import pydicom
from pydicom.encaps import generate_fragments


def number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main(paths):
    for path in paths:
        try:
            print(json.dumps(describe(path)))
        except Exception as exc:  # noqa: BLE001 - report, keep going
            print(json.dumps({"path": path, "error": str(exc)}))


def describe(path):
    if True:
        ds = pydicom.dcmread(path)
        out = {"path": path}
        for kw in ("Modality", "SOPClassUID", "SOPInstanceUID", "Manufacturer", "PhotometricInterpretation",
                   "SeriesDescription", "ScanningSequence", "SequenceVariant", "StudyDate"):
            v = ds.get(kw)
            out[kw] = "\\".join(map(str, v)) if isinstance(v, pydicom.multival.MultiValue) else (str(v) if v is not None else "")
        for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel"):
            v = ds.get(kw)
            out[kw] = int(v) if v is not None else None
        out["NumberOfFrames"] = int(ds.NumberOfFrames) if "NumberOfFrames" in ds else (1 if "PixelData" in ds else None)
        for kw in ("FrameTime", "EchoTime", "RepetitionTime", "SliceThickness"):
            out[kw] = number(ds.get(kw))
        ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        out["PixelSpacing"] = [float(ps[0]), float(ps[1])] if ps else None
        out["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else ""
        if "PixelData" in ds:
            raw = ds.PixelData
            h = hashlib.sha256()
            if ds.file_meta.TransferSyntaxUID.is_encapsulated:
                # The first item is the Basic Offset Table; the hash covers the fragments only.
                for frag in list(generate_fragments(raw))[1:]:
                    h.update(frag)
            else:
                if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and ds["PixelData"].VR == "OW":
                    # Canonical little-endian words, whatever the file's byte order.
                    raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw) - 1, 2))
                h.update(raw)
            out["sha256"] = h.hexdigest()
        else:
            out["sha256"] = ""
        return out


if __name__ == "__main__":
    main(sys.argv[1:])
