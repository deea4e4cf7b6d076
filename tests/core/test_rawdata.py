"""Reading the raw export as delivered: encodings, line ends, layout and clear errors."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.core import rawdata
from pipeline.core.rawdata import (
    RESPONSE_COLUMNS,
    checksums,
    decode_bytes,
    normalize_text,
    parse_numbers,
    read_cohorts,
    read_raw_export,
)
from pipeline.errors import InputError


@pytest.fixture(autouse=True, params=["read", "mapped"])
def file_access(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: files read into memory, and every non-empty file memory-mapped
    (as large files are), so that both kinds of bytes take every path."""
    if request.param == "mapped":
        monkeypatch.setattr(rawdata.discovery, "_MAP_FROM", 1)
    return request.param


HEADER = ",".join(RESPONSE_COLUMNS)
ROW = "R{n},D{n},diabetes,内科,関東,病院,2024/06/03 10:00:00,2024/06/03 10:10:00,{p},3"
COHORTS = "code,label\ndiabetes,糖尿病\nasthma,喘息\n"
FRAME = (
    'specialty,region,facility_type,n_physicians\n内科,関東,病院,"1,200"\n'
    "内科,関西,診療所,１，５００\n"
)


def response_csv(shares: dict[str, list[str]] | None = None, rows: int = 2) -> str:
    shares = shares or {"share_a": ["60"] * rows, "share_b": ["40"] * rows}
    lines = [HEADER + "".join(f",{name}" for name in shares)]
    for i in range(rows):
        cells = "".join(f",{values[i]}" for values in shares.values())
        lines.append(ROW.format(n=i + 1, p=10 + i) + cells)
    return "\n".join(lines) + "\n"


def write_export(root: Path, files: dict[str, bytes | str], *, special: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if special:
        files = {"cohorts.csv": COHORTS, "frame.csv": FRAME, **files}
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def check_where(error: InputError, file: str, row: int | None = None, column: str | None = None):
    assert error.file == file
    assert file in str(error)
    if row is not None:
        assert error.row == row
        assert f"row {row}" in str(error)
    if column is not None:
        assert error.column == column
        assert repr(column) in str(error)


# --- happy path -----------------------------------------------------------------------------


def test_reads_every_encoding_and_line_end(tmp_path: Path) -> None:
    text = response_csv()
    raw = write_export(
        tmp_path / "raw",
        {
            "a_plain.csv": text,
            "b_bom_crlf.csv": b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"),
            "sub/c_sjis.csv": text.replace("\n", "\r\n").encode("cp932"),
        },
    )
    export = read_raw_export(raw)

    df = export.responses
    assert len(df) == 6
    assert list(df.columns) == [
        *RESPONSE_COLUMNS,
        "share_a",
        "share_b",
        "source_file",
        "source_row",
    ]
    assert (
        df["source_file"].tolist()
        == ["a_plain.csv"] * 2 + ["b_bom_crlf.csv"] * 2 + ["sub/c_sjis.csv"] * 2
    )
    assert df["source_row"].tolist() == [2, 3] * 3
    assert set(df["specialty"]) == {"内科"}  # CP932 decoded, no BOM or \r left anywhere
    assert set(df["share_b"]) == {"40"}
    assert df["response_id"].iloc[0] == "R1"
    assert export.share_columns == ["share_a", "share_b"]
    assert export.cohorts["code"].tolist() == ["diabetes", "asthma"]
    assert export.cohorts["label"].tolist() == ["糖尿病", "喘息"]
    assert export.frame["n_physicians"].tolist() == [1200, 1500]
    assert export.frame["n_physicians"].dtype == np.int64
    assert export.files == checksums(raw)
    assert (
        export.files["sub/c_sjis.csv"]
        == hashlib.sha256((raw / "sub/c_sjis.csv").read_bytes()).hexdigest()
    )
    assert sorted(export.files) == [
        "a_plain.csv",
        "b_bom_crlf.csv",
        "cohorts.csv",
        "frame.csv",
        "sub/c_sjis.csv",
    ]


def test_values_stay_as_delivered_and_empty_is_empty(tmp_path: Path) -> None:
    shares = {"share_a": [" ６０ ", ""], "share_b": ['"1,0"', "40"]}
    raw = write_export(tmp_path, {"r.csv": response_csv(shares)})
    df = read_raw_export(raw).responses
    assert df["share_a"].tolist() == [" ６０ ", ""]
    assert df["share_b"].tolist() == ["1,0", "40"]


def test_share_columns_are_the_union_and_missing_ones_are_null(tmp_path: Path) -> None:
    raw = write_export(
        tmp_path,
        {
            "a.csv": response_csv({"share_x": ["100", "100"]}),
            "b.csv": response_csv({"share_y": ["100", "100"]}),
        },
    )
    export = read_raw_export(raw)
    assert export.share_columns == ["share_x", "share_y"]
    df = export.responses
    assert df["share_x"].isna().tolist() == [False, False, True, True]
    assert df["share_y"].isna().tolist() == [True, True, False, False]


def test_header_names_are_normalised_and_column_order_is_free(tmp_path: Path) -> None:
    names = list(RESPONSE_COLUMNS)
    names[8] = " Ｎ_Patients "  # full-width, capitalised, padded
    order = [9, 8, *range(8)]
    header = ",".join(names[i] for i in order)
    row = ROW.format(n=1, p=5).split(",")
    text = header + ",share_a\n" + ",".join(row[i] for i in order) + ",100\n"
    df = read_raw_export(write_export(tmp_path, {"r.csv": text})).responses
    assert df["n_patients"].tolist() == ["5"]
    assert df["attention_check"].tolist() == ["3"]


def test_source_row_is_the_line_a_record_starts_on(tmp_path: Path) -> None:
    lines = response_csv(rows=3).split("\n")
    # a quoted value spanning two lines, and a blank line: later rows keep their line numbers
    lines[1] = lines[1].replace("内科", '"内\n科"')
    text = "\r\n".join([lines[0], lines[1], "", lines[2], lines[3]]) + "\r\n"
    df = read_raw_export(write_export(tmp_path, {"r.csv": text})).responses
    assert df["source_row"].tolist() == [2, 5, 6]
    assert df["specialty"].iloc[0] == "内\n科"


def test_cp932_after_a_long_ascii_start_is_still_detected(tmp_path: Path) -> None:
    rows = 3000  # the first 64 KiB are ASCII only, Japanese comes later
    text = response_csv(rows=rows).replace("内科,関東,病院", "im,kanto,hp", rows - 1)
    raw = write_export(tmp_path, {"r.csv": text.encode("cp932")})
    df = read_raw_export(raw).responses
    assert df["specialty"].iloc[-1] == "内科"
    assert len(df) == rows


def messy_responses(rows: int, seed: int) -> str:
    """Response rows with what the fast paths must get right: Japanese and full-width
    values in some rows or all, quoted commas, quotes, line breaks inside values (LF, CR
    and CRLF) and blank lines."""
    rng = random.Random(seed)
    values = ["内科", "ﾅｲｶ", "１，２００", "1,200", "abc", " 35 ", "", 'say "hi"', "x"]
    breaks = ["a\nb", "a\r\nb", "a\rb", "続\nき"]
    header = [*RESPONSE_COLUMNS, "share_a", "share_b"]
    lines = [",".join(header)]
    for i in range(rows):
        cells = [f"R{i}", f"D{i % 97}", "diabetes", "内科", "関東", "病院", "", "", str(i), "3"]
        cells += [str(i % 100), ""]
        for _ in range(rng.randint(0, 3)):
            cells[rng.randrange(1, len(cells))] = rng.choice(values)
        if rng.random() < 0.02:
            cells[rng.randrange(1, len(cells))] = rng.choice(breaks)
        lines.append(",".join(csv_cell(c) for c in cells))
        if rng.random() < 0.01:
            lines.append("")
    return "\n".join(lines) + "\n"


def csv_cell(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def reference_rows(text: str) -> list[tuple[int, list[str]]]:
    """(start line, fields) of every record after the header, by Python's csv module."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out, end = [], 0
    for record in reader:
        if record:
            out.append((end + 1, record))
        end = reader.line_num
    return out[1:]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_values_and_rows_match_a_plain_csv_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, line_end: str
) -> None:
    # small parse blocks: arrow's blocks then get cut inside quoted values too, which the
    # fast first parse must notice (the careful one then decides)
    monkeypatch.setattr(rawdata.parsing, "_BLOCK_SIZE", 1 << 11)
    text = messy_responses(1500, seed=len(encoding) + len(line_end))
    text = text.replace("\n", line_end).replace("a\r" + line_end, "a\r\n")
    raw = write_export(tmp_path, {"r.csv": text.encode(encoding)})
    df = read_raw_export(raw).responses
    expected = reference_rows(text)
    assert df["source_row"].tolist() == [line for line, _ in expected]
    columns = [*RESPONSE_COLUMNS, "share_a", "share_b"]
    for j, name in enumerate(columns):
        assert df[name].tolist() == [fields[j] for _, fields in expected], name


def test_cp932_values_are_decoded_value_by_value(tmp_path: Path) -> None:
    # every kind of column: all Japanese, a few full-width values, plain ASCII
    text = response_csv(rows=400)
    lines = text.split("\n")
    lines[7] = lines[7].replace("diabetes", "ＤＩＡＢＥＴＥＳ").replace(",10", ",１０")
    lines[9] = lines[9].replace("R9,", "Ｒ９,")
    text = "\r\n".join(lines)
    df = read_raw_export(write_export(tmp_path, {"r.csv": text.encode("cp932")})).responses
    assert df["disease"].iloc[6] == "ＤＩＡＢＥＴＥＳ"
    assert df["response_id"].iloc[8] == "Ｒ９"
    assert set(df["region"]) == {"関東"}
    assert df["share_a"].tolist() == ["60"] * 400
    expected = reference_rows(text)
    for j, name in enumerate([*RESPONSE_COLUMNS, "share_a", "share_b"]):
        assert df[name].tolist() == [fields[j] for _, fields in expected], name


def test_an_undecodable_value_deep_in_a_cp932_file_is_reported(tmp_path: Path) -> None:
    rows = 3000  # past the first 64 KiB, which only decide between UTF-8 and CP932
    text = response_csv(rows=rows)
    data = text.encode("cp932").replace(b"R3000,", b"R3000\x81,")  # a lead byte alone
    raw = write_export(tmp_path, {"r.csv": data})
    with pytest.raises(InputError, match="neither UTF-8 nor CP932") as info:
        read_raw_export(raw)
    check_where(info.value, "r.csv", row=rows + 1)


def test_a_malformed_line_in_a_cp932_file_names_its_line(tmp_path: Path) -> None:
    text = response_csv(rows=3) + "R9,内科\n" + ROW.format(n=7, p=1) + ",50,50\n"
    raw = write_export(tmp_path, {"r.csv": text.encode("cp932")})
    with pytest.raises(InputError, match="malformed CSV line: 2 fields") as info:
        read_raw_export(raw)
    check_where(info.value, "r.csv", row=5)


def test_an_earlier_files_error_comes_first(tmp_path: Path) -> None:
    undecodable = response_csv().encode("cp932") + "R9,内科,".encode("cp932") + b"\x81\n"
    files = {"a.csv": undecodable, "b.csv": response_csv() + "R9,D9\n"}
    with pytest.raises(InputError, match="neither UTF-8 nor CP932") as info:
        read_raw_export(write_export(tmp_path, files))
    check_where(info.value, "a.csv", row=4)


def test_read_cohorts_alone(tmp_path: Path) -> None:
    raw = write_export(tmp_path, {"r.csv": b"not even parsed"})
    assert read_cohorts(raw)["code"].tolist() == ["diabetes", "asthma"]
    (raw / "cohorts.csv").unlink()
    with pytest.raises(InputError, match=r"no cohorts\.csv") as info:
        read_cohorts(raw)
    check_where(info.value, "cohorts.csv")


def test_checksums_match_the_bytes_without_parsing(tmp_path: Path) -> None:
    raw = write_export(tmp_path, {"x/r.csv": b"not,even\nparsed"})
    assert checksums(raw)["x/r.csv"] == hashlib.sha256(b"not,even\nparsed").hexdigest()


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "a,b\n糖尿病,1\n".encode(),
        b"\xef\xbb\xbf" + "a,b\r\n糖尿病,1\r\n".encode(),
        "a,b\r\n糖尿病,1\r\n".encode("cp932"),
    ],
    ids=["utf-8", "utf-8-bom", "cp932"],
)
def test_decode_bytes_detects_the_encoding(data: bytes) -> None:
    assert decode_bytes(data, "f.csv").replace("\r\n", "\n") == "a,b\n糖尿病,1\n"


def test_undecodable_bytes_name_the_file_line_and_offset(tmp_path: Path) -> None:
    data = b"a,b\n1,2\nx,\x81 \n"  # a CP932 lead byte without its second byte
    with pytest.raises(InputError, match="byte offset 10") as info:
        decode_bytes(data, "r.csv")
    check_where(info.value, "r.csv", row=3)

    raw = write_export(tmp_path, {"r.csv": response_csv().encode() + b"R9,\x81\n"})
    with pytest.raises(InputError, match="neither UTF-8 nor CP932") as info:
        read_raw_export(raw)
    check_where(info.value, "r.csv", row=4)


# --- layout errors --------------------------------------------------------------------------


def test_missing_raw_dir(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_raw_export(tmp_path / "nope")
    with pytest.raises(InputError, match="does not exist"):
        checksums(tmp_path / "nope")


def test_no_csv_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"holds no \*\.csv file"):
        read_raw_export(tmp_path)


@pytest.mark.parametrize("name", ["cohorts.csv", "frame.csv"])
def test_missing_cohorts_or_frame(tmp_path: Path, name: str) -> None:
    files = {"cohorts.csv": COHORTS, "frame.csv": FRAME, "r.csv": response_csv()}
    del files[name]
    with pytest.raises(InputError, match=f"no {name}") as info:
        read_raw_export(write_export(tmp_path, files, special=False))
    check_where(info.value, name)


def test_nested_cohorts_file_is_refused(tmp_path: Path) -> None:
    raw = write_export(tmp_path, {"r.csv": response_csv(), "old/cohorts.csv": COHORTS})
    with pytest.raises(InputError, match="must sit at the top") as info:
        read_raw_export(raw)
    check_where(info.value, "old/cohorts.csv")


def test_no_response_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no response CSV"):
        read_raw_export(write_export(tmp_path, {}))


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    text = response_csv().replace("n_patients", "patients").replace("disease,", "illness,")
    with pytest.raises(InputError, match=r"missing required column.* disease, n_patients") as info:
        read_raw_export(write_export(tmp_path, {"r.csv": text}))
    check_where(info.value, "r.csv", row=1)


def test_repeated_header_column(tmp_path: Path) -> None:
    text = response_csv({"share_a": ["1", "1"], "SHARE_A": ["2", "2"]})
    with pytest.raises(InputError, match="twice") as info:
        read_raw_export(write_export(tmp_path, {"r.csv": text}))
    check_where(info.value, "r.csv", row=1, column="share_a")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty") as info:
        read_raw_export(write_export(tmp_path, {"r.csv": b"\xef\xbb\xbf"}))
    check_where(info.value, "r.csv", row=1)


@pytest.mark.parametrize(
    ("line", "detail"),
    [("R9,D9,extra,fields,,,,,,,,,,,", "15 fields"), ("R9,D9", "2 fields"), ('R9,"open', "")],
    ids=["too-many", "too-few", "unclosed-quote"],
)
def test_malformed_csv_line_names_file_and_line(tmp_path: Path, line: str, detail: str) -> None:
    text = response_csv(rows=3) + line + "\n" + ROW.format(n=7, p=1) + ",50,50\n"
    with pytest.raises(InputError, match=rf"malformed CSV.*{detail}") as info:
        read_raw_export(write_export(tmp_path, {"r.csv": text}))
    check_where(info.value, "r.csv", row=5)


@pytest.mark.parametrize(
    ("code", "match"),
    [("Diabetes/2", "not allowed"), ("-x", "not allowed"), ("", "empty cohort code")],
)
def test_bad_cohort_code_names_file_row_column(tmp_path: Path, code: str, match: str) -> None:
    files = {"cohorts.csv": f"code,label\nasthma,喘息\n{code},x\n", "frame.csv": FRAME}
    files["r.csv"] = response_csv()
    with pytest.raises(InputError, match=match) as info:
        read_raw_export(write_export(tmp_path, files, special=False))
    check_where(info.value, "cohorts.csv", row=3, column="code")


def test_cohort_codes_are_nfkc_normalised_and_lower_cased(tmp_path: Path) -> None:
    files = {"cohorts.csv": "code,label\n ＤＩＡＢＥＴＥＳ ,糖尿病\nHeart-Failure,心不全\n"}
    files.update({"frame.csv": FRAME, "r.csv": response_csv()})
    export = read_raw_export(write_export(tmp_path, files, special=False))
    assert export.cohorts["code"].tolist() == ["diabetes", "heart-failure"]


def test_repeated_cohort_code(tmp_path: Path) -> None:
    files = {"cohorts.csv": "code,label\nasthma,a\nＡＳＴＨＭＡ,b\n", "frame.csv": FRAME}
    files["r.csv"] = response_csv()
    with pytest.raises(InputError, match="listed twice") as info:
        read_raw_export(write_export(tmp_path, files, special=False))
    check_where(info.value, "cohorts.csv", row=3, column="code")


@pytest.mark.parametrize("value", ["abc", "12.5", "-3", "", "1,2"])
def test_bad_frame_number_names_file_row_column(tmp_path: Path, value: str) -> None:
    frame = f'specialty,region,facility_type,n_physicians\na,b,c,10\na,b,d,"{value}"\n'
    files = {"cohorts.csv": COHORTS, "frame.csv": frame, "r.csv": response_csv()}
    with pytest.raises(InputError, match="whole number of physicians") as info:
        read_raw_export(write_export(tmp_path, files, special=False))
    check_where(info.value, "frame.csv", row=3, column="n_physicians")


def test_frame_segment_errors(tmp_path: Path) -> None:
    frame = "specialty,region,facility_type,n_physicians\na,b,c,10\n,b,c,5\n"
    files = {"cohorts.csv": COHORTS, "frame.csv": frame, "r.csv": response_csv()}
    with pytest.raises(InputError, match="empty value") as info:
        read_raw_export(write_export(tmp_path / "1", files, special=False))
    check_where(info.value, "frame.csv", row=3, column="specialty")

    files["frame.csv"] = "specialty,region,facility_type,n_physicians\na,b,c,10\nａ,b,c,5\n"
    with pytest.raises(InputError, match="listed twice") as info:
        read_raw_export(write_export(tmp_path / "2", files, special=False))
    check_where(info.value, "frame.csv", row=3)


# --- shared normalisation -------------------------------------------------------------------


def test_normalize_text() -> None:
    values = pa.array(["  ａｂｃ ", "", None, "　", "x", "ｶﾀｶﾅ", " 内科"], pa.large_string())
    assert normalize_text(values).to_pylist() == ["abc", None, None, None, "x", "カタカナ", "内科"]


def reference_normalize(value: str | None) -> str | None:
    if value is None:
        return None
    return unicodedata.normalize("NFKC", value).strip() or None


@pytest.mark.parametrize("changed", [3, 300, 3000])
def test_normalize_text_matches_python_however_many_values_change(changed: int) -> None:
    rng = random.Random(changed)
    values: list[str | None] = [f"v{i}" for i in range(5000)]
    for i in rng.sample(range(5000), changed):
        values[i] = rng.choice(["ｖ１", " v ", "　", "", None, "ｶ", "内科 ", "v\t"])
    array = pa.array(values, pa.large_string()).slice(7)  # an offset, as slices have
    assert normalize_text(array).to_pylist() == [reference_normalize(v) for v in values[7:]]


_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")


def reference_number(value: str) -> float | None:
    """The grammar of parse_numbers, written plainly."""
    text = unicodedata.normalize("NFKC", value).strip().replace(" ", "")
    if _PLAIN.fullmatch(text):
        return float(text)
    if _GROUPED.fullmatch(text):
        return float(text.replace(",", ""))
    return None


def test_parse_numbers_matches_the_grammar_on_random_text() -> None:
    rng = random.Random(5)
    alphabet = "0123456789" * 3 + ".,,-+ １a"
    values = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(20000)
    ]
    values += ["1,234", "12,345", "123,456", "1,234,567", "1,23", "12,34", ",123", "1234,567"]
    numbers, bad = parse_numbers(pa.array(values, pa.large_string()))
    _assert_parsed_as_the_grammar_says(values, numbers, bad)


def _assert_parsed_as_the_grammar_says(values: list[str], numbers, bad) -> None:
    """Each value's parse against ``reference_number``: blank is NaN and not bad, what
    the grammar refuses NaN and bad, the rest its number."""
    for value, number, is_bad in zip(values, numbers.tolist(), bad.tolist(), strict=True):
        expected = reference_number(value)
        if not unicodedata.normalize("NFKC", value).strip():
            assert np.isnan(number) and not is_bad, repr(value)
        elif expected is None:
            assert np.isnan(number) and is_bad, repr(value)
        else:
            assert number == expected and not is_bad, repr(value)


def test_parse_numbers_of_a_chunked_mostly_empty_column_of_repeated_values() -> None:
    # the share columns' way: the filled cells gathered, each distinct value parsed once
    rng = random.Random(7)
    alphabet = "0123456789" * 3 + ".,,-+ １a"
    pool = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(60)]
    pool += ["1,234", "33.3", "１，２００", "1.2.3", " ", "\u3000"]
    chunks = [
        [rng.choice(pool) if rng.random() < 0.2 else "" for _ in range(3000)] for _ in range(3)
    ]
    values = [value for chunk in chunks for value in chunk]
    column = pa.chunked_array([pa.array(chunk, pa.large_string()) for chunk in chunks])
    numbers, bad = parse_numbers(column)
    assert bad.any() and (~np.isnan(numbers)).any()
    _assert_parsed_as_the_grammar_says(values, numbers, bad)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1200", 1200.0),
        ("１，２００", 1200.0),
        ("1,200", 1200.0),
        (" 35 ", 35.0),
        ("1 200", 1200.0),
        ("12,345,678.5", 12345678.5),
        ("33.3", 33.3),
        ("-3", -3.0),
        ("０.５", 0.5),
    ],
)
def test_parse_numbers_accepts(text: str, number: float) -> None:
    numbers, bad = parse_numbers(pa.array([text], pa.large_string()))
    assert numbers[0] == number
    assert not bad[0]


@pytest.mark.parametrize(
    "text", ["abc", "1,2", "1.2.3", "1e5", "nan", "約50", "50人", ".", "1,2345", "12,34", ",123"]
)
def test_parse_numbers_refuses(text: str) -> None:
    numbers, bad = parse_numbers(pa.array([text], pa.large_string()))
    assert np.isnan(numbers[0])
    assert bad[0]


def test_parse_numbers_missing_is_not_bad() -> None:
    numbers, bad = parse_numbers(pa.array(["", " ", None], pa.large_string()))
    assert np.isnan(numbers).all()
    assert not bad.any()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"a",
        b"a\r\nb\rc\n\r",
        b"\r",
        b"\n\n",
        b"x\r" * 5 + b"\r\n",
        b"a" * ((1 << 20) - 1) + b"\r\n" + b"b\r" * 3,  # a CRLF across the 1 MiB blocks
    ],
)
def test_line_breaks_count_lf_and_lone_cr(data: bytes) -> None:
    breaks = rawdata.parsing.line_breaks(data)
    assert breaks.lf == data.count(b"\n")
    assert breaks.lone_cr == data.count(b"\r") - data.count(b"\r\n")
    assert breaks.final == data.endswith((b"\n", b"\r"))
