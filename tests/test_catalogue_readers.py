"""Catalogue readers on the real files in ../shared/data and on deliberately broken ones.

Expected rows are computed here from the raw files with the json and csv modules,
independently of the pyarrow code under test; every table then goes through
``validate_catalogue`` so the rejects and their reasons are the ones featurize would write.
"""

from __future__ import annotations

import collections
import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_dataset

from seqrec_ray.data import catalogue as C
from seqrec_ray.data import catalogue_readers as CR


def _read(path, fmt: str) -> pa.Table:
    table = CR.read_catalogue(str(path), fmt)
    assert table.schema == C.READ_SCHEMA
    return table


def _by_id(table: pa.Table, column: str) -> dict:
    return dict(zip(table["item_id"].to_pylist(), table[column].to_pylist()))


def _rejects(table: pa.Table) -> list[tuple]:
    kept, rejects = C.validate_catalogue(table)
    assert kept.num_rows + rejects.num_rows == table.num_rows
    return list(zip(rejects["row"].to_pylist(), rejects["raw"].to_pylist(), rejects["reason"].to_pylist()))


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize("dataset, name, items, attributes", [
    ("amazon-beauty", "Beauty_item2attributes.json", 12101, 637),
    ("lastfm", "LastFM_item2attributes.json", 3646, 388),
])
def test_s3rec_attributes_real_files(dataset, name, items, attributes):
    path = shared_dataset(dataset) / name
    expected = {k: [str(a) for a in v] for k, v in json.loads(path.read_text()).items()}
    table = _read(path, "s3rec-attributes")
    assert table.num_rows == len(expected) == items
    assert _by_id(table, "attributes") == expected  # order and repeats kept as in the file
    assert len({a for v in expected.values() for a in v}) == attributes
    kept, rejects = C.validate_catalogue(table)
    assert (kept.num_rows, rejects.num_rows) == (items, 0)


def test_diginetica_product_categories_real_file():
    path = shared_dataset("diginetica-purchases") / "product-categories.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0] == ["itemId", "categoryId"]
    expected = dict(rows[1:])
    table = _read(path, "diginetica")
    assert table.num_rows == len(rows) - 1 == len(expected) == 184047
    assert _by_id(table, "category_id") == expected
    assert len(set(expected.values())) == 1217
    assert set(table["_error"].to_pylist()) == {None}
    assert _rejects(table) == []


def test_jdsearch_product_meta_real_file():
    path = shared_dataset("jdsearch-sample") / "product_meta_data_sample.txt"
    lines = [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n") if line]
    header, rows = lines[0], [dict(zip(lines[0], line)) for line in lines[1:]]
    assert len(header) == 13 and all(len(line) == 13 for line in lines)
    table = _read(path, "jdsearch")
    assert table.num_rows == len(rows) == 409
    got = {r["item_id"]: r for r in table.to_pylist()}
    for r in rows:
        row = got[r["wid"]]
        assert row["title"] == " ".join(r["name"].split("\x18"))
        assert row["brand"] == r["brand_id"]
        assert row["category_id"] == r["cate_id_4"]  # every sample row has all four levels
        shop = [] if r["shop_id"] == "-1" else [f"shop:{r['shop_id']}"]
        assert row["attributes"] == [f"cate{k}:{r[f'cate_id_{k}']}" for k in (1, 2, 3)] + shop
    assert [r["wid"] for r in rows if r["shop_id"] == "-1"] == ["46394749"]
    assert len({a for r in table["attributes"].to_pylist() for a in r}) == 335
    assert len(set(table["category_id"].to_pylist())) == 79
    assert _rejects(table) == []


def _taobao_expected(files) -> dict:
    votes = collections.defaultdict(collections.Counter)
    for file in files:
        with open(file, newline="") as f:
            for _user, item, category, _behaviour, _ts in csv.reader(f):
                votes[item][category] += 1
    return {item: min(c, key=lambda k: (-c[k], int(k))) for item, c in votes.items()}


def test_taobao_real_files_most_frequent_category():
    folder = shared_dataset("taobao-userbehavior")
    smallest = folder / "UserBehavior_head_fattydelivery.csv"
    table = _read(smallest, "taobao")
    expected = _taobao_expected([smallest])
    assert table.num_rows == len(expected) == 3276
    assert _by_id(table, "category_id") == expected
    assert len(set(expected.values())) == 567
    everything = _read(folder, "taobao")
    expected = _taobao_expected(sorted(folder.glob("*.csv")))
    assert everything.num_rows == len(expected) == 83393
    assert _by_id(everything, "category_id") == expected
    assert _rejects(everything) == []


# ---------------------------------------------------------------- items: JSON


def test_items_jsonl_bad_lines_and_their_reasons(tmp_path):
    lines = [
        '{"item_id": 7, "title": "Red Shoe", "category_id": 3, "brand": "Acme", "price": "12.5",'
        ' "attributes": ["a", 2], "colour": "ignored"}',
        '{"item_id": "x", "attributes": "s | m||l"}',
        '{"item_id": "bad json"',
        '[1, 2]',
        '',
        '{"item_id": "y", "attributes": {"size": "m"}}',
        '{"item_id": "z", "price": "cheap"}',
        '{"item_id": "x", "title": "again"}',
        '{"title": "no id"}',
    ]
    table = _read(_write(tmp_path / "items.jsonl", "\n".join(lines) + "\n"), "items")
    assert table.num_rows == 8  # the blank line is no row
    assert table.slice(0, 2).to_pylist() == [
        {"item_id": "7", "title": "Red Shoe", "category_id": "3", "brand": "Acme", "price": 12.5,
         "attributes": ["a", "2"], "_error": None, "_raw": None},
        {"item_id": "x", "title": None, "category_id": None, "brand": None, "price": None,
         "attributes": ["s", "m", "l"], "_error": None, "_raw": None},
    ]
    rejects = _rejects(table)
    assert [(row, reason) for row, _, reason in rejects] == [
        (2, "malformed_row"), (3, "malformed_row"), (4, "malformed_row"), (5, "bad_price"),
        (6, "duplicate_item_id"), (7, "missing_item_id")]
    assert [raw for _, raw, _ in rejects[:4]] == [lines[2], lines[3], lines[5], lines[6]]
    assert json.loads(rejects[4][1])["title"] == "again"


def test_items_json_list_and_files_that_are_not_items_json(tmp_path):
    rows = [{"item_id": 1, "price": 3}, 5, {"item_id": 2, "brand": None}]
    table = _read(_write(tmp_path / "items.json", json.dumps(rows)), "items")
    assert _by_id(table, "price") == {"1": 3.0, None: None, "2": None}
    assert _rejects(table) == [(1, "5", "malformed_row")]
    with pytest.raises(ValueError, match=r"not_a_list\.json: not a items catalogue: JSON dict"):
        _read(_write(tmp_path / "not_a_list.json", '{"item_id": 1}'), "items")
    with pytest.raises(ValueError, match=r"broken\.json: .*invalid JSON"):
        _read(_write(tmp_path / "broken.json", '[{"item_id": 1}'), "items")
    with pytest.raises(ValueError, match=r"no_id\.jsonl: .*no object has an 'item_id' key"):
        _read(_write(tmp_path / "no_id.jsonl", '{"title": "a"}\n{"title": "b"}\n'), "items")


# ---------------------------------------------------------------- items: CSV and Parquet


def test_items_csv_quoting_extra_columns_and_bad_rows(tmp_path):
    text = ('\ufeffitem_id,title,price,attributes,colour\n'
            '1,"Shoe, red",9.99,a|b,red\n'
            '2,Hat,abc,,blue\n'
            '3,Sock\n'
            ',Nameless,1,,\n'
            '4,Bag,-2,,\n')
    for name in ("items.csv", "items.csv.gz"):
        data = text.encode()
        path = _write(tmp_path / name, gzip.compress(data) if name.endswith(".gz") else data)
        table = _read(path, "items")
        assert table.num_rows == 5
        assert table.slice(0, 1).to_pylist()[0] == {
            "item_id": "1", "title": "Shoe, red", "category_id": None, "brand": None, "price": 9.99,
            "attributes": ["a", "b"], "_error": None, "_raw": None}
        rejects = _rejects(table)
        assert [(row, reason) for row, _, reason in rejects] == [
            (1, "bad_price"), (2, "missing_item_id"), (3, "bad_price"),  # -2: a negative price
            (4, "malformed_row")]
        assert rejects[0][1] == "2,Hat,abc,,blue"
        assert rejects[3][1] == "3,Sock"  # the wrong-field-count line, as written
    with pytest.raises(ValueError, match=r"no_id\.csv: not a items catalogue: header \['sku', 'title'\]"):
        _read(_write(tmp_path / "no_id.csv", "sku,title\n1,a\n"), "items")
    assert _read(_write(tmp_path / "header_only.csv", "item_id,title"), "items").num_rows == 0


def test_items_parquet_typed_columns(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({
        "item_id": pa.array([10, 11, 12], pa.int64()), "category_id": pa.array([5, None, 6]),
        "price": pa.array(["1.5", "n/a", None]), "attributes": pa.array([["x", "y"], [], None]),
        "stock": pa.array([1, 2, 3]),
    }), path)
    table = _read(path, "items")
    assert _by_id(table, "category_id") == {"10": "5", "11": None, "12": "6"}
    assert _by_id(table, "attributes") == {"10": ["x", "y"], "11": [], "12": None}
    assert _rejects(table) == [(1, '{"item_id": 11, "category_id": null, "price": "n/a", '
                                   '"attributes": []}', "bad_price")]
    pq.write_table(pa.table({"sku": [1]}), tmp_path / "no_id.parquet")
    with pytest.raises(ValueError, match=r"no_id\.parquet: not a items catalogue: columns \['sku'\]"):
        _read(tmp_path / "no_id.parquet", "items")


def test_items_parquet_attribute_strings_are_split(tmp_path):
    path = tmp_path / "items.pq"
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "attributes": ["x| y |", "", None]}), path)
    assert _by_id(_read(path, "items"), "attributes") == {"a": ["x", "y"], "b": None, "c": None}


# ---------------------------------------------------------------- the real formats, broken


def test_s3rec_attributes_non_list_values_and_duplicates(tmp_path):
    text = '{"1": [1, 2], "2": "red", "3": [1, [2]], "4": {"a": 1}, "1": [3]}'
    table = _read(_write(tmp_path / "x_item2attributes.json", text), "s3rec-attributes")
    assert table["item_id"].to_pylist() == ["1", "2", "3", "4", "1"]
    assert table["attributes"].to_pylist()[0] == ["1", "2"]
    assert _rejects(table) == [(1, '{"2": "red"}', "malformed_row"), (2, '{"3": [1, [2]]}', "malformed_row"),
                               (3, '{"4": {"a": 1}}', "malformed_row"), (4, '{"item_id": "1", "title": null, '
                               '"category_id": null, "brand": null, "price": null, "attributes": ["3"]}',
                               "duplicate_item_id")]
    with pytest.raises(ValueError, match=r"list\.json: not a s3rec-attributes catalogue: JSON list, not an object"):
        _read(_write(tmp_path / "list.json", "[[1, 2]]"), "s3rec-attributes")


def test_diginetica_wrong_column_count_encoding_and_header(tmp_path):
    data = b"itemId;categoryId\n1;10\n2;20;x\n3\n\xff4;40\n5;\n"
    table = _read(_write(tmp_path / "product-categories.csv", data), "diginetica")
    assert _by_id(table, "category_id") == {"1": "10", "\ufffd4": "40", "5": None, None: None}
    assert _rejects(table) == [(1, "\ufffd4;40", "bad_encoding"), (3, "2;20;x", "malformed_row"),
                               (4, "3", "malformed_row")]
    with pytest.raises(ValueError, match=r"cats\.csv: not a diginetica file: header \['item', 'category'\]"):
        _read(_write(tmp_path / "cats.csv", "item;category\n1;2\n"), "diginetica")


def test_jdsearch_fallbacks_and_wrong_column_count(tmp_path):
    header = "\t".join(CR._JDSEARCH.columns)
    full = ["7", "11\x1822", "b1", "n", "c1", "", "c2", "", "c3", "", "", "", "-1"]
    sparse = ["8", "", "-1", "", "c1", "", "", "", "", "", "", "", "s9"]
    text = "\n".join([header, "\t".join(full), "\t".join(sparse), "9\tonly two"]) + "\n"
    table = _read(_write(tmp_path / "meta.txt", text), "jdsearch")
    assert table.slice(0, 2).select(["item_id", "title", "category_id", "brand", "attributes"]).to_pylist() == [
        {"item_id": "7", "title": "11 22", "category_id": "c3", "brand": "b1",
         "attributes": ["cate1:c1", "cate2:c2", "cate3:c3"]},
        {"item_id": "8", "title": None, "category_id": "c1", "brand": None, "attributes": ["cate1:c1", "shop:s9"]},
    ]
    assert _rejects(table) == [(2, "9\tonly two", "malformed_row")]
    with pytest.raises(ValueError, match=r"meta2\.txt: not a jdsearch file: header"):
        _read(_write(tmp_path / "meta2.txt", "wid\tname\n1\t2\n"), "jdsearch")


def test_taobao_votes_ties_and_unparseable_lines(tmp_path):
    lines = ["1,a,10,pv,1511544070", "2,a,10,pv,1511544071", "1,a,5,pv,1511544072", "2,a,5,buy,1511544073",
             "1,b,7,pv,1511544070", "1,b,8,pv,1511544070", "1,b,8,cart,1511544070",
             "1,c,,pv,1511544070", "user_id,item_id,category_id,behavior_type,timestamp",
             "1,d,9,pv", "1,e,9,pv,soon"]
    folder = tmp_path / "logs"
    folder.mkdir()
    _write(folder / "part1.csv", "\n".join(lines[:6]) + "\n")
    _write(folder / "part2.csv", "\n".join(lines[6:]) + "\n")
    _write(folder / "notes.txt", "not data\n")
    for path in (folder, folder / "*.csv"):
        table = _read(path, "taobao")
        # a: 5 and 10 twice each -> 5 (smallest as a number, not as text); c: no category seen
        assert _by_id(table.slice(0, 3), "category_id") == {"a": "5", "b": "8", "c": None}
        assert _rejects(table) == [(3, lines[8], "malformed_row"), (4, lines[10], "malformed_row"),
                                   (5, lines[9], "malformed_row")]
    _write(tmp_path / "enc.csv", b"1,\xffz,3,pv,1511544070\n")
    assert _rejects(_read(tmp_path / "enc.csv", "taobao")) == [(0, "1,\ufffdz,3,pv,1511544070", "bad_encoding")]


# ---------------------------------------------------------------- the API


def test_unknown_format_missing_path_and_unknown_extension(tmp_path):
    assert set(CR.CATALOGUE_FORMAT_HELP) == set(CR.CATALOGUE_FORMATS)
    with pytest.raises(ValueError, match="unknown catalogue format 'amazon'; known formats: items, s3rec-attributes"):
        CR.read_catalogue(str(tmp_path), "amazon")
    for fmt in CR.CATALOGUE_FORMATS:
        with pytest.raises(FileNotFoundError):
            CR.read_catalogue(str(tmp_path / "absent.csv"), fmt)
    with pytest.raises(ValueError, match=r"items\.xml: the items format reads names ending in \.parquet"):
        CR.read_catalogue(str(_write(tmp_path / "items.xml", "<a/>")), "items")
    with pytest.raises(ValueError, match="a directory"):
        CR.read_catalogue(str(tmp_path), "diginetica")
