"""Realistic sample raw exports for laptops, tests and benchmarks.

``generate`` writes a physician-survey export in the contract format
(docs/contracts/raw-export.md): ``cohorts.csv``, ``frame.csv`` and three response files under
``responses/`` in the encodings and line ends real exports arrive in, with the anomalies
real exports carry, each at a small rate. Everything is vectorised (numpy and pyarrow), so
a million rows take seconds, and the bytes depend only on the arguments.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.rawdata import COHORTS_FILE, FRAME_FILE, RESPONSE_COLUMNS

# (code, label, treatments): the first twelve cohorts; more are made up from the pool.
COHORT_POOL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("diabetes", "糖尿病", ("metformin", "dpp4i", "sglt2i", "glp1ra", "insulin")),
    ("hypertension", "高血圧症", ("arb", "ccb", "acei", "diuretic")),
    ("asthma", "喘息", ("ics", "ics_laba", "ltra", "biologic")),
    ("dyslipidemia", "脂質異常症", ("statin", "ezetimibe", "pcsk9i")),
    ("copd", "慢性閉塞性肺疾患", ("lama", "lama_laba", "ics_laba")),
    ("ckd", "慢性腎臓病", ("arb", "sglt2i", "esa", "phosphate_binder")),
    ("heart-failure", "心不全", ("acei", "arni", "beta_blocker", "sglt2i", "mra")),
    ("atopic-dermatitis", "アトピー性皮膚炎", ("topical_steroid", "jaki", "biologic")),
    ("rheumatoid-arthritis", "関節リウマチ", ("methotrexate", "biologic", "jaki")),
    ("migraine", "片頭痛", ("triptan", "cgrp_mab", "nsaid")),
    ("depression", "うつ病", ("ssri", "snri", "nassa", "vortioxetine")),
    ("osteoporosis", "骨粗鬆症", ("bisphosphonate", "denosumab", "teriparatide", "vitamin_d")),
)
# Typical patients per month per physician, before segment effects.
_BASE_PATIENTS = {
    "diabetes": 90,
    "hypertension": 160,
    "asthma": 45,
    "dyslipidemia": 110,
    "copd": 30,
    "ckd": 35,
    "heart-failure": 25,
    "atopic-dermatitis": 40,
    "rheumatoid-arthritis": 20,
    "migraine": 30,
    "depression": 50,
    "osteoporosis": 60,
}
# (specialty, weight among respondents, cohorts it mainly treats)
SPECIALTIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("一般内科", 0.30, ("diabetes", "hypertension", "dyslipidemia")),
    ("循環器内科", 0.14, ("hypertension", "heart-failure", "dyslipidemia")),
    ("糖尿病・代謝内科", 0.10, ("diabetes", "dyslipidemia", "ckd")),
    ("呼吸器内科", 0.09, ("asthma", "copd")),
    ("腎臓内科", 0.06, ("ckd", "hypertension")),
    ("皮膚科", 0.08, ("atopic-dermatitis",)),
    ("整形外科", 0.10, ("osteoporosis", "rheumatoid-arthritis")),
    ("精神科", 0.07, ("depression",)),
    ("脳神経内科", 0.06, ("migraine",)),
)
REGIONS: tuple[tuple[str, float], ...] = (
    ("北海道", 0.04),
    ("東北", 0.07),
    ("関東", 0.35),
    ("中部", 0.17),
    ("近畿", 0.17),
    ("中国", 0.06),
    ("四国", 0.03),
    ("九州・沖縄", 0.11),
)
# (facility type, weight, patient-volume factor, preference for newer treatments)
FACILITIES: tuple[tuple[str, float, float, float], ...] = (
    ("大学病院", 0.12, 1.5, 2.0),
    ("一般病院", 0.38, 1.2, 1.3),
    ("診療所", 0.50, 0.85, 0.8),
)
RESPONSE_FILES: tuple[tuple[str, str, str], ...] = (
    ("responses/wave1.csv", "utf-8-sig", "\r\n"),
    ("responses/wave2.csv", "cp932", "\r\n"),
    ("responses/wave3.csv", "utf-8", "\n"),
)
_SURVEY_START = np.datetime64("2024-06-03T00:00:00", "s")  # UTC
_JST = np.timedelta64(9 * 3600, "s")
_FULL_WIDTH = str.maketrans("0123456789,", "０１２３４５６７８９，")

# Row anomaly categories; each row gets at most one, rejections first.
_OK, _FORMAT, _SPEEDER, _ATTENTION, _RANGE, _SHARES, _UNPARSEABLE, _MISSING, _UNKNOWN = range(9)
_CATEGORY_RATES = {
    _FORMAT: 0.04,
    _SPEEDER: 0.008,
    _ATTENTION: 0.008,
    _RANGE: 0.005,
    _SHARES: 0.005,
    _UNPARSEABLE: 0.005,
    _MISSING: 0.005,
    _UNKNOWN: 0.003,
}
_DUPLICATE_RATE = 0.01


@dataclass(frozen=True)
class _Cohort:
    code: str
    label: str
    treatments: tuple[str, ...]


def cohort_catalogue(count: int, rng: np.random.Generator) -> list[_Cohort]:
    """The first ``count`` cohorts: the named pool, then made-up ones with pool treatments."""
    cohorts = [_Cohort(code, label, tr) for code, label, tr in COHORT_POOL[:count]]
    pool = sorted({t for _, _, tr in COHORT_POOL for t in tr})
    for i in range(len(cohorts), count):
        k = int(rng.integers(3, 6))
        picked = tuple(pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False)))
        cohorts.append(_Cohort(f"cohort-{i + 1:03d}", f"疾患{i + 1}", picked))
    return cohorts


def generate(
    out_dir: Path, *, cohorts: int = 4, respondents: int = 2000, seed: int = 0
) -> dict[str, object]:
    """Write a sample raw export into ``out_dir`` (created if needed) and describe it.

    ``respondents`` is the number of physicians; each answers one to three cohorts, so
    the response rows are about 1.9 × respondents (capped by ``cohorts``) plus about 1 %
    resubmissions. Files written (existing files of the same name are replaced):

    - ``cohorts.csv`` (CP932, CRLF) and ``frame.csv`` (UTF-8 with BOM, CRLF; some
      ``n_physicians`` with thousands separators, one in full-width digits);
    - ``responses/wave1.csv`` (UTF-8 with BOM, CRLF), ``responses/wave2.csv`` (CP932,
      CRLF, columns in another order) and ``responses/wave3.csv`` (UTF-8, LF), split by
      submission time.

    Anomalies, each at a small rate (and each at least once when there are enough rows):
    duplicates (a later resubmission), speeders, failed attention checks, out-of-range
    values, shares not summing to 100 (or all empty), unparseable values, empty required
    fields, unknown cohort codes; and valid but messy values: full-width digits and
    letters, thousands separators, stray spaces, ``YYYY/MM/DD HH:MM:SS`` and ISO-8601
    timestamps with and without offsets. The same arguments give byte-identical files.

    Returns ``{"out_dir", "respondents", "rows", "cohorts", "files": {path: rows},
    "encodings": {path: encoding}}`` with paths relative to ``out_dir``.
    """
    if cohorts < 1 or respondents < 1:
        raise ValueError("cohorts and respondents must be at least 1")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    catalogue = cohort_catalogue(cohorts, rng)

    files: dict[str, int] = {}
    encodings: dict[str, str] = {}
    cohort_lines = ["code,label"] + [f"{c.code},{c.label}" for c in catalogue]
    _write(out_dir / COHORTS_FILE, "\r\n".join(cohort_lines) + "\r\n", "cp932")
    files[COHORTS_FILE], encodings[COHORTS_FILE] = len(catalogue), "cp932"
    frame_text, frame_rows = _frame_csv(rng)
    _write(out_dir / FRAME_FILE, frame_text, "utf-8-sig")
    files[FRAME_FILE], encodings[FRAME_FILE] = frame_rows, "utf-8-sig"

    table, share_columns = _responses(catalogue, respondents, rng)
    bounds = np.linspace(0, len(table), len(RESPONSE_FILES) + 1).round().astype(int)
    for i, (name, encoding, newline) in enumerate(RESPONSE_FILES):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        columns = [*RESPONSE_COLUMNS, *share_columns]
        if encoding == "cp932":
            # a second survey tool exports in another column order
            columns = [*RESPONSE_COLUMNS[:8], "attention_check", "n_patients", *share_columns[::-1]]
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, _csv_text(part, columns, newline), encoding)
        files[name], encodings[name] = len(part), encoding
    return {
        "out_dir": str(out_dir),
        "respondents": respondents,
        "rows": len(table),
        "cohorts": [c.code for c in catalogue],
        "files": files,
        "encodings": encodings,
    }


def _write(path: Path, text: str, encoding: str) -> None:
    """Whole or not at all (temp file + rename): a killed run leaves no half export."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(text.encode(encoding))
    os.replace(tmp, path)


def _frame_csv(rng: np.random.Generator) -> tuple[str, int]:
    lines = ["specialty,region,facility_type,n_physicians"]
    for s_name, s_weight, _ in SPECIALTIES:
        for r_name, r_weight, *_ in REGIONS:
            for f_name, f_weight, *_ in FACILITIES:
                n = round(300_000 * s_weight * r_weight * f_weight * float(rng.lognormal(0, 0.15)))
                lines.append(f"{s_name},{r_name},{f_name},{_frame_number(max(n, 1), len(lines))}")
    return "\r\n".join(lines) + "\r\n", len(lines) - 1


def _frame_number(n: int, index: int) -> str:
    if index == 7:
        return f"{n:,}".translate(_FULL_WIDTH)
    if n >= 1000 and index % 2:
        return f'"{n:,}"'
    return f" {n} " if index % 11 == 0 else str(n)


def _choice(rng: np.random.Generator, weights: Sequence[float], size: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _responses(
    catalogue: list[_Cohort], respondents: int, rng: np.random.Generator
) -> tuple[pa.Table, list[str]]:
    """All response rows (strings as they will be written), sorted by submission time."""
    n_cohorts = len(catalogue)
    codes = [c.code for c in catalogue]
    specialty = _choice(rng, [s[1] for s in SPECIALTIES], respondents)
    region = _choice(rng, [r[1] for r in REGIONS], respondents)
    facility = _choice(rng, [f[1] for f in FACILITIES], respondents)

    # Which cohorts each physician answers: weighted top-k by Gumbel keys, home cohorts first.
    home = np.ones((len(SPECIALTIES), n_cohorts))
    for s, (_, _, homes) in enumerate(SPECIALTIES):
        for c, code in enumerate(codes):
            if code in homes:
                home[s, c] = 6.0
    keys = np.log(home[specialty]) + rng.gumbel(size=(respondents, n_cohorts))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    answers = np.minimum(_choice(rng, [0.4, 0.35, 0.25], respondents) + 1, n_cohorts)
    who, cohort = np.nonzero(rank < answers[:, None])
    n = len(who)
    is_home = home[specialty[who], cohort] > 1

    base = np.array([_BASE_PATIENTS.get(code, 35) for code in codes], dtype=float)
    volume = np.array([f[2] for f in FACILITIES])[facility[who]]
    patients = base[cohort] * np.where(is_home, 2.5, 0.7) * volume * rng.lognormal(0, 0.5, n)
    n_patients = np.maximum(np.round(patients), 1).astype(np.int64)

    share_columns = list(dict.fromkeys(f"share_{t}" for c in catalogue for t in c.treatments))
    share_tenths = np.full((n, len(share_columns)), -1, dtype=np.int64)
    newer = np.array([f[3] for f in FACILITIES])[facility[who]]
    for c, item in enumerate(catalogue):
        rows = np.nonzero(cohort == c)[0]
        k = len(item.treatments)
        alpha = (
            4.0 * np.linspace(1.6, 0.6, k)[None, :] * newer[rows, None] ** np.linspace(-0.5, 1.0, k)
        )
        p = rng.gamma(alpha)
        p /= p.sum(axis=1, keepdims=True)
        whole = rng.random(len(rows)) < 0.85  # most answer in whole percent
        tenths = np.where(whole[:, None], np.floor(p * 100) * 10, np.floor(p * 1000))
        top = np.argmax(tenths, axis=1)
        tenths[np.arange(len(rows)), top] += 1000 - tenths.sum(axis=1)
        cols = [share_columns.index(f"share_{t}") for t in item.treatments]
        share_tenths[np.ix_(rows, cols)] = tenths.astype(np.int64)

    start_offset = rng.integers(0, 21 * 86400, n) + _daytime(rng, n)
    started = _SURVEY_START + start_offset.astype("timedelta64[s]")
    duration = np.maximum(np.round(rng.lognormal(np.log(480), 0.5, n)), 150).astype(np.int64)

    category = _categories(n, rng)
    speeder = category == _SPEEDER
    duration[speeder] = rng.integers(15, 110, int(speeder.sum()))
    submitted = started + duration.astype("timedelta64[s]")

    # Resubmissions: copies of valid rows, one to three days later, answers slightly changed.
    dup = np.nonzero((category == _OK) & (rng.random(n) < _DUPLICATE_RATE))[0]
    later = rng.integers(3600, 72 * 3600, len(dup)).astype("timedelta64[s]")
    who = np.concatenate([who, who[dup]])
    cohort = np.concatenate([cohort, cohort[dup]])
    n_patients = np.concatenate(
        [n_patients, np.maximum(n_patients[dup] + rng.integers(-3, 4, len(dup)), 1)]
    )
    share_tenths = np.concatenate([share_tenths, share_tenths[dup]])
    started = np.concatenate([started, started[dup] + later])
    submitted = np.concatenate([submitted, submitted[dup] + later])
    category = np.concatenate([category, np.full(len(dup), _OK, dtype=category.dtype)])

    order = np.argsort(submitted, kind="stable")
    who, cohort, n_patients = who[order], cohort[order], n_patients[order]
    share_tenths, started, submitted = share_tenths[order], started[order], submitted[order]
    category = category[order]
    n = len(order)

    ids = rng.permutation(respondents) + 100_001
    columns: dict[str, pa.Array] = {
        "response_id": pc.binary_join_element_wise(
            "R", pc.utf8_lpad(_str(np.arange(1, n + 1)), 8, "0"), ""
        ),
        "respondent_id": pc.binary_join_element_wise("D", _str(ids[who]), ""),
        "disease": pa.array(np.array(codes, dtype=object)[cohort], pa.string()),
        "specialty": _labels([s[0] for s in SPECIALTIES], specialty[who]),
        "region": _labels([r[0] for r in REGIONS], region[who]),
        "facility_type": _labels([f[0] for f in FACILITIES], facility[who]),
        "started_at": _timestamps(started, rng),
        "submitted_at": _timestamps(submitted, rng),
        "n_patients": _thousands(n_patients, rng.random(n) < 0.5),
        "attention_check": pa.array(np.full(n, "3", dtype=object), pa.string()),
    }
    shares = {name: _tenths_text(share_tenths[:, j]) for j, name in enumerate(share_columns)}
    _apply_anomalies(columns, shares, share_tenths, category, rng)
    return pa.table({**columns, **shares}), share_columns


def _daytime(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day so that JST answering times cluster in the evening."""
    hours_jst = np.clip(rng.normal(19.0, 3.5, n), 7, 24.9)
    return (hours_jst * 3600).astype(np.int64) - 9 * 3600


def _categories(n: int, rng: np.random.Generator) -> np.ndarray:
    rates = np.array([1.0 - sum(_CATEGORY_RATES.values()), *_CATEGORY_RATES.values()])
    category = rng.choice(len(rates), size=n, p=rates).astype(np.int8)
    special = np.array(list(_CATEGORY_RATES))
    if n >= 4 * len(special):  # every anomaly at least once, even in small samples
        category[rng.choice(n, size=len(special), replace=False)] = special
    return category


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _labels(names: list[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()), pa.array(names)).cast(
        pa.string()
    )


def _thousands(values: np.ndarray, grouped: np.ndarray) -> pa.Array:
    """Integers as text, with thousands separators where ``grouped`` (|value| < 10**6)."""
    plain = _str(values)
    high, low = np.divmod(np.abs(values), 1000)
    sign = np.where(values < 0, "-", "").astype(object)
    with_sep = pc.binary_join_element_wise(
        pa.array(sign, pa.string()), _str(high), ",", pc.utf8_lpad(_str(low), 3, "0"), ""
    )
    return pc.if_else(pa.array(grouped & (high > 0)), with_sep, plain)


def _tenths_text(tenths: np.ndarray) -> pa.Array:
    """Shares in tenths of a percent as text: 350 → "35", 333 → "33.3", -1 → empty."""
    whole, frac = np.divmod(tenths, 10)
    text = pc.if_else(
        pa.array(frac == 0),
        _str(whole),
        pc.binary_join_element_wise(_str(whole), _str(frac), "."),
    )
    return pc.if_else(pa.array(tenths < 0), "", text)


def _timestamps(utc: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Timestamps in the styles survey tools write: JST slashes, ISO with/without offset, Z."""
    n = len(utc)
    jst = pa.array(np.datetime_as_string(utc + _JST, unit="s"))
    slash = pc.replace_substring(pc.replace_substring(jst, "-", "/"), "T", " ")
    iso_offset = pc.binary_join_element_wise(jst, "+09:00", "")
    iso_z = pc.binary_join_element_wise(pa.array(np.datetime_as_string(utc, unit="s")), "Z", "")
    style = _choice(rng, [0.55, 0.3, 0.1, 0.05], n)
    out = pc.case_when(
        pc.make_struct(*(pa.array(style == k) for k in range(3))), slash, iso_offset, jst, iso_z
    )
    return out


def _set(column: pa.Array, rows: np.ndarray, values: Sequence[str] | pa.Array) -> pa.Array:
    """``column`` with the given ``rows`` (sorted indices) replaced by ``values``."""
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(column, pa.array(mask), pa.array(values, pa.string()))


def _pick(rng: np.random.Generator, options: Sequence[str], size: int) -> list[str]:
    return [options[i] for i in rng.integers(0, len(options), size)]


def _apply_anomalies(
    columns: dict[str, pa.Array],
    shares: dict[str, pa.Array],
    share_tenths: np.ndarray,
    category: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Turn the rows of each anomaly category into what real exports contain (in place).
    The categories are applied in this order: each draws from ``rng`` in turn."""
    export = _Anomalous(columns, shares, share_tenths, category, rng)
    for apply in (
        _messy_values,
        _failed_attention,
        _out_of_range,
        _shares_not_100,
        _unparseable,
        _missing_required,
        _unknown_cohort,
    ):
        apply(export)


@dataclass
class _Anomalous:
    """The response columns ``_apply_anomalies`` rewrites, and what it draws on: the
    shares in tenths, each row's anomaly category and the random generator."""

    columns: dict[str, pa.Array]
    shares: dict[str, pa.Array]
    share_tenths: np.ndarray
    category: np.ndarray
    rng: np.random.Generator

    def of(self, cat: int) -> np.ndarray:
        """The rows of anomaly category ``cat``."""
        return np.nonzero(self.category == cat)[0]

    def split(self, rows: np.ndarray, parts: int) -> list[np.ndarray]:
        """``rows`` dealt at random into ``parts`` groups."""
        which = self.rng.integers(0, parts, len(rows))
        return [rows[which == k] for k in range(parts)]

    def share_of(self, rows: np.ndarray, pick_max: bool) -> np.ndarray:
        """Per row, the share column to change: its largest, or its first answered."""
        t = self.share_tenths[rows]
        return np.argmax(t, axis=1) if pick_max else np.argmax(t >= 0, axis=1)

    def set(self, name: str, rows: np.ndarray, values: Sequence[str] | pa.Array) -> None:
        """Column ``name``'s ``rows`` replaced by ``values``."""
        self.columns[name] = _set(self.columns[name], rows, values)

    def set_share(self, rows: np.ndarray, col: np.ndarray, tenths: np.ndarray) -> None:
        """Share column ``col[k]`` of each of ``rows[k]`` set to ``tenths[k]`` (tenths of %)."""
        names = list(self.shares)
        for j in np.unique(col):
            sel = col == j
            self.shares[names[j]] = _set(
                self.shares[names[j]], rows[sel], _tenths_text(tenths[sel])
            )


def _messy_values(export: _Anomalous) -> None:
    """Valid but messy (``_FORMAT`` rows): full-width or spaced ``n_patients``, full-width
    or capitalised disease codes, a full-width or spaced attention answer."""
    fw, spaces, disease_case, attention_fw = export.split(export.of(_FORMAT), 4)
    npat = export.columns["n_patients"]
    fw_text = [s.translate(_FULL_WIDTH) for s in npat.take(pa.array(fw)).to_pylist()]
    npat = _set(npat, fw, fw_text)
    npat = _set(npat, spaces, [f" {s} " for s in npat.take(pa.array(spaces)).to_pylist()])
    export.columns["n_patients"] = npat
    disease = export.columns["disease"]
    upper = [
        s.upper().translate({i: i + 0xFEE0 for i in range(0x21, 0x7F)}) if k % 2 else s.title()
        for k, s in enumerate(disease.take(pa.array(disease_case)).to_pylist())
    ]
    export.set("disease", disease_case, upper)
    export.set(
        "attention_check", attention_fw, _pick(export.rng, ["３", " 3 ", "3 "], len(attention_fw))
    )


def _failed_attention(export: _Anomalous) -> None:
    """``_ATTENTION`` rows: a wrong or empty attention answer."""
    attention = export.of(_ATTENTION)
    export.set(
        "attention_check", attention, _pick(export.rng, ["1", "2", "4", "5", ""], len(attention))
    )


def _out_of_range(export: _Anomalous) -> None:
    """``_RANGE`` rows: ``n_patients`` too large or negative, or the first share answered
    set to -10 (its points and 10 more going to the largest; 110 where it is the largest)."""
    rng, share_tenths = export.rng, export.share_tenths
    big, shares_low = export.split(export.of(_RANGE), 2)
    values = np.where(rng.random(len(big)) < 0.7, rng.integers(10_001, 99_999, len(big)), -3)
    export.set("n_patients", big, _thousands(values, rng.random(len(big)) < 0.5))
    low_col, top_col = export.share_of(shares_low, False), export.share_of(shares_low, True)
    low_t = share_tenths[shares_low, low_col]
    top_t = share_tenths[shares_low, top_col]
    same = low_col == top_col
    export.set_share(shares_low, low_col, np.where(same, 1100, -100))
    export.set_share(shares_low[~same], top_col[~same], (top_t + low_t + 100)[~same])


def _shares_not_100(export: _Anomalous) -> None:
    """``_SHARES`` rows: the largest share moved by 5-20 points, or every share empty."""
    rng = export.rng
    off, empty = export.split(export.of(_SHARES), 2)
    delta = rng.integers(50, 201, len(off)) * np.where(rng.random(len(off)) < 0.5, -1, 1)
    top_col = export.share_of(off, True)
    export.set_share(off, top_col, export.share_tenths[off, top_col] + delta)
    for name in export.shares:
        export.shares[name] = _set(export.shares[name], empty, [""] * len(empty))


def _unparseable(export: _Anomalous) -> None:
    """``_UNPARSEABLE`` rows: text that is no number or timestamp in ``n_patients``,
    ``submitted_at``, ``started_at`` or the largest share."""
    rng = export.rng
    u_npat, u_sub, u_start, u_share = export.split(export.of(_UNPARSEABLE), 4)
    export.set("n_patients", u_npat, _pick(rng, ["abc", "約50", "50人", "-", "1.2.3"], len(u_npat)))
    bad_times = ["2024/13/45 25:61:00", "不明", "2024-06-31T10:00:00+09:00", "yesterday"]
    export.set("submitted_at", u_sub, _pick(rng, bad_times, len(u_sub)))
    export.set("started_at", u_start, _pick(rng, bad_times, len(u_start)))
    names = list(export.shares)
    col = export.share_of(u_share, True)
    for j in np.unique(col):
        sel = u_share[col == j]
        export.shares[names[j]] = _set(
            export.shares[names[j]], sel, _pick(rng, ["N/A", "半分", "40%"], len(sel))
        )


def _missing_required(export: _Anomalous) -> None:
    """``_MISSING`` rows: one required field empty (``submitted_at`` a blank)."""
    missing = export.of(_MISSING)
    field = export.rng.integers(0, 5, len(missing))
    for k, name in enumerate(["response_id", "respondent_id", "disease", "n_patients"]):
        export.set(name, missing[field == k], [""] * int((field == k).sum()))
    export.set("submitted_at", missing[field == 4], [" "] * int((field == 4).sum()))


def _unknown_cohort(export: _Anomalous) -> None:
    """``_UNKNOWN`` rows: a disease code that is no cohort."""
    unknown = export.of(_UNKNOWN)
    export.set("disease", unknown, _pick(export.rng, ["gout", "痛風", "cancer"], len(unknown)))


def _csv_field(values: pa.Array) -> pa.Array:
    """Values quoted where CSV needs it (comma, quote, line break)."""
    needs = pc.match_substring_regex(values, '[,"\r\n]')
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


def _csv_text(table: pa.Table, columns: list[str], newline: str) -> str:
    fields = [_csv_field(table.column(name).combine_chunks()) for name in columns]
    lines = pc.binary_join_element_wise(*fields, ",")
    lines = pc.binary_join_element_wise(lines, newline, "").cast(pa.large_string())
    if len(lines) == 0:
        return ",".join(columns) + newline
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    body = lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    return ",".join(columns) + newline + body.decode("utf-8")
