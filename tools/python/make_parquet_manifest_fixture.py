"""Writes the Parquet manifest fixture of bedside-ml's manifest tests with pyarrow (a peer writer).

    python tools/python/make_parquet_manifest_fixture.py

writes crates/bedside-ml/tests/fixtures/manifest_pyarrow.parquet and, beside it,
manifest_pyarrow.csv: the text cells the Rust reader must produce from the Parquet file
(strings as they are, integers and booleans in decimal / true/false, floating-point numbers in
their shortest round-trip form, dates as YYYYMMDD, nulls empty). Needs pyarrow only when
regenerating; the Rust tests read the committed files.
"""

import csv
import datetime
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "bedside-ml" / "tests" / "fixtures"

ROWS = [
    # study, array (existing fixtures), split, label, ef, score32, time, event, age, sex, visit, big, note
    ("S1", "gray_i16.npy", "train", 0, 55.25, 0.1, 100.5, True, 50, "F", datetime.date(2024, 2, 29), 2**53 + 1, "plain"),
    ("S2", "rgb_u8.npy", "val", 1, 1.0 / 3.0, 2.5, 200.0, False, None, None, datetime.date(1969, 12, 31), -5, "ü,\"q\""),
    ("S3", "f64.npy", "train", 1, 62.0, -3.75, 0.001, True, 70, "M", datetime.date(2000, 1, 1), 0, ""),
]


def shortest(x: float) -> str:
    """Rust's `Display` of an f64: the shortest round-trip digits, no `.0` on whole numbers."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def main() -> None:
    cols = list(zip(*ROWS))
    table = pa.table(
        {
            "study_id": pa.array(cols[0], pa.string()),
            "array": pa.array(cols[1], pa.string()),
            # Dictionary-encoded, as pandas writes a categorical column.
            "split": pa.array(cols[2], pa.string()).dictionary_encode(),
            "label": pa.array(cols[3], pa.int64()),
            "ef": pa.array(cols[4], pa.float64()),
            "score32": pa.array(cols[5], pa.float32()),
            "time": pa.array(cols[6], pa.float64()),
            "event": pa.array(cols[7], pa.bool_()),
            "age": pa.array(cols[8], pa.int32()),
            "sex": pa.array(cols[9], pa.string()),
            "visit": pa.array(cols[10], pa.date32()),
            "big": pa.array(cols[11], pa.int64()),
            "note": pa.array(cols[12], pa.string()),
        }
    )
    pq.write_table(table, OUT / "manifest_pyarrow.parquet", compression="snappy")
    with open(OUT / "manifest_pyarrow.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(table.column_names)
        for study, array, split, label, ef, s32, time, event, age, sex, visit, big, note in ROWS:
            w.writerow([
                study, array, split, str(label), shortest(ef),
                # float32 values chosen so that the f32 shortest form equals the f64 one
                shortest(s32), shortest(time), "true" if event else "false",
                "" if age is None else str(age), sex or "", visit.strftime("%Y%m%d"), str(big), note,
            ])


if __name__ == "__main__":
    main()
