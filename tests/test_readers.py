"""Unit tests for ingest/readers.py: JSONL and CSV streaming with line numbers and per-row errors (no Neo4j)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from ingest import READERS, IngestError, RowError
from ingest.readers import format_of, get_reader, open_binary, read_csv, read_jsonl


def rows(reader, data: bytes, **kw) -> list:
    return list(reader(io.BytesIO(data), **kw))


def good(items: list) -> list:
    return [(n, r) for n, r in items if not isinstance(r, RowError)]


def bad(items: list) -> list:
    return [(n, r) for n, r in items if isinstance(r, RowError)]


# -- JSONL ------------------------------------------------------------------------------------
class TestReadJsonl:
    def test_records_with_one_based_line_numbers(self) -> None:
        data = b'{"id": 1}\n{"id": 2}\n{"id": 3, "t": "\xc3\xa9"}\n'
        assert rows(read_jsonl, data) == [(1, {"id": 1}), (2, {"id": 2}), (3, {"id": 3, "t": "\u00e9"})]

    def test_last_line_without_newline(self) -> None:
        assert rows(read_jsonl, b'{"a": 1}\n{"a": 2}') == [(1, {"a": 1}), (2, {"a": 2})]

    def test_blank_lines_are_skipped_but_counted(self) -> None:
        data = b'\n{"a": 1}\n\n   \n\t\r\n{"a": 2}\n\n'
        assert rows(read_jsonl, data) == [(2, {"a": 1}), (6, {"a": 2})]

    def test_crlf_line_endings(self) -> None:
        assert rows(read_jsonl, b'{"a": 1}\r\n{"a": 2}\r\n') == [(1, {"a": 1}), (2, {"a": 2})]

    def test_malformed_json_is_a_row_error_and_later_lines_still_come(self) -> None:
        data = b'{"a": 1}\n{"a": 2\n{not json}\n"unterminated\n{"a": 5}\n'
        out = rows(read_jsonl, data)
        assert good(out) == [(1, {"a": 1}), (5, {"a": 5})]
        errs = bad(out)
        assert [n for n, _ in errs] == [2, 3, 4]
        for _, e in errs:
            assert e.field is None
            assert e.reason.startswith("malformed JSON")

    def test_non_utf8_bytes_are_a_row_error(self) -> None:
        data = b'{"a": 1}\n{"a": "caf\xe9"}\n{"a": "\xff\xfe"}\n{"a": 4}\n'
        out = rows(read_jsonl, data)
        assert good(out) == [(1, {"a": 1}), (4, {"a": 4})]
        assert [n for n, _ in bad(out)] == [2, 3]
        assert all("UTF-8" in e.reason for _, e in bad(out))

    def test_utf8_byte_order_mark_on_the_first_line(self) -> None:
        assert rows(read_jsonl, b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n') == [(1, {"a": 1}), (2, {"a": 2})]

    def test_non_object_json_is_passed_on(self) -> None:
        # the reader only parses; the mapping decides what a usable record is
        assert rows(read_jsonl, b'[1, 2]\n42\nnull\n') == [(1, [1, 2]), (2, 42), (3, None)]

    def test_hostile_strings_come_through_as_data(self) -> None:
        rec = {"title": "a'b\"c`d }) DETACH DELETE n //", "x": "\u0000nul"}
        out = rows(read_jsonl, json.dumps(rec).encode() + b"\n")
        assert out == [(1, rec)]

    def test_empty_stream(self) -> None:
        assert rows(read_jsonl, b"") == []

    def test_gzip_file(self, tmp_path: Path) -> None:
        p = tmp_path / "x.jsonl.gz"
        lines = [json.dumps({"id": i, "t": f"t{i}"}) for i in range(1, 251)]
        lines.insert(100, "{broken")
        with gzip.open(p, "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with open_binary(p) as fh:
            out = list(read_jsonl(fh))
        assert len(out) == 251
        assert [n for n, _ in bad(out)] == [101]
        g = good(out)
        assert g[0] == (1, {"id": 1, "t": "t1"})
        assert g[100] == (102, {"id": 101, "t": "t101"})
        assert g[-1] == (251, {"id": 250, "t": "t250"})

    def test_plain_file_via_open_binary(self, tmp_path: Path) -> None:
        p = tmp_path / "x.ndjson"
        p.write_bytes(b'{"a": 1}\n\n{"a": 2}\n')
        with open_binary(p) as fh:
            assert list(read_jsonl(fh)) == [(1, {"a": 1}), (3, {"a": 2})]


# -- CSV --------------------------------------------------------------------------------------
class TestReadCsv:
    def test_header_and_rows_with_line_numbers(self) -> None:
        data = b"id,title,price\n1,Tea,10\n2,Coffee,20\n"
        assert rows(read_csv, data) == [
            (2, {"id": "1", "title": "Tea", "price": "10"}),
            (3, {"id": "2", "title": "Coffee", "price": "20"}),
        ]

    def test_quoted_fields_with_commas_and_quotes(self) -> None:
        data = b'id,title\n1,"Brass Angle Deep - Plain, No.2"\n2,"say ""hi"""\n'
        assert rows(read_csv, data) == [
            (2, {"id": "1", "title": "Brass Angle Deep - Plain, No.2"}),
            (3, {"id": "2", "title": 'say "hi"'}),
        ]

    def test_records_spanning_several_physical_lines(self) -> None:
        data = (
            b'id,desc\n'
            b'1,"line one\nline two\nline three"\n'  # lines 2-4
            b'2,plain\n'  # line 5
            b'3,"a\r\nb"\n'  # lines 6-7
            b'4,end\n'  # line 8
        )
        out = rows(read_csv, data)
        assert [n for n, _ in out] == [2, 5, 6, 8]
        assert out[0][1] == {"id": "1", "desc": "line one\nline two\nline three"}
        assert out[2][1] == {"id": "3", "desc": "a\r\nb"}
        assert out[3][1] == {"id": "4", "desc": "end"}

    def test_crlf_file(self) -> None:
        assert rows(read_csv, b"a,b\r\n1,2\r\n3,4\r\n") == [(2, {"a": "1", "b": "2"}), (3, {"a": "3", "b": "4"})]

    def test_blank_lines_are_skipped_but_counted(self) -> None:
        data = b"a,b\n\n1,2\n   \n\n3,4\n"
        assert rows(read_csv, data) == [(3, {"a": "1", "b": "2"}), (6, {"a": "3", "b": "4"})]

    def test_wrong_field_counts_are_rejected_with_a_message(self) -> None:
        data = b"a,b,c\n1,2,3\n1,2\n1,2,3,4\n7,8,9\n"
        out = rows(read_csv, data)
        assert good(out) == [(2, {"a": "1", "b": "2", "c": "3"}), (5, {"a": "7", "b": "8", "c": "9"})]
        errs = bad(out)
        assert [n for n, _ in errs] == [3, 4]
        assert "2 fields" in errs[0][1].reason and "3" in errs[0][1].reason
        assert "4 fields" in errs[1][1].reason

    def test_malformed_quoting_is_a_row_error_and_the_file_goes_on(self) -> None:
        data = b'a,b\n1,"x"y\n3,4\n'
        out = rows(read_csv, data)
        assert good(out) == [(3, {"a": "3", "b": "4"})]
        assert [n for n, _ in bad(out)] == [2]
        assert "malformed CSV" in bad(out)[0][1].reason

    def test_unterminated_quote_at_the_end(self) -> None:
        out = rows(read_csv, b'a,b\n1,2\n3,"never closed\n4,5\n')
        assert good(out) == [(2, {"a": "1", "b": "2"})]
        assert [n for n, _ in bad(out)] == [3]

    def test_non_utf8_row_is_rejected_alone_on_its_own_line(self) -> None:
        data = b"a,b\n1,ok\n2,caf\xe9\n3,\xff\xfe\n4,fine\n"
        out = rows(read_csv, data)
        assert good(out) == [(2, {"a": "1", "b": "ok"}), (5, {"a": "4", "b": "fine"})]
        errs = bad(out)
        assert [n for n, _ in errs] == [3, 4]
        assert all("utf-8" in e.reason.lower() for _, e in errs)

    def test_non_utf8_row_deep_in_a_big_file(self) -> None:
        # more than one decoder chunk (8 KiB) before the bad byte: the good rows before it must all come through
        body = b"".join(b"%d,value %d\n" % (i, i) for i in range(1, 3001))
        data = b"id,v\n" + body + b"3001,\xe9t\xe9\n3002,after\n"
        out = rows(read_csv, data)
        assert len(good(out)) == 3001
        assert [n for n, _ in bad(out)] == [3002]
        assert good(out)[-1] == (3003, {"id": "3002", "v": "after"})
        assert good(out)[2999] == (3001, {"id": "3000", "v": "value 3000"})

    def test_non_utf8_header_is_an_ingest_error(self) -> None:
        with pytest.raises(IngestError, match="header"):
            rows(read_csv, b"id,caf\xe9\n1,2\n")

    def test_other_encoding(self) -> None:
        data = "id,name\n1,Café\n".encode("latin-1")
        assert rows(read_csv, data, encoding="latin-1") == [(2, {"id": "1", "name": "Café"})]

    def test_delimiter_and_quotechar_options(self) -> None:
        data = b"id;name\n1;'a;b'\n"
        assert rows(read_csv, data, delimiter=";", quotechar="'") == [(2, {"id": "1", "name": "a;b"})]

    def test_empty_header_cells_are_named_col_n(self) -> None:
        out = rows(read_csv, b"id,,name, \n1,x,y,z\n")
        assert out == [(2, {"id": "1", "_col2": "x", "name": "y", "_col4": "z"})]

    def test_header_names_are_stripped(self) -> None:
        assert rows(read_csv, b" id , name\n1,2\n") == [(2, {"id": "1", "name": "2"})]

    def test_duplicate_header_names_made_distinct(self) -> None:
        out = rows(read_csv, b"a,b,a,a\n1,2,3,4\n")
        (line, rec), = out
        assert line == 2
        assert len(rec) == 4  # no column lost
        assert rec["a"] == "1" and rec["b"] == "2"
        assert sorted(rec.values()) == ["1", "2", "3", "4"]

    def test_renamed_duplicate_does_not_collide_with_a_real_column(self) -> None:
        out = rows(read_csv, b"a,a,a_2\n1,2,3\n")
        (_, rec), = out
        assert len(rec) == 3
        assert rec["a"] == "1" and rec["a_2"] == "3"
        assert sorted(rec.values()) == ["1", "2", "3"]

    def test_byte_order_mark_is_not_part_of_the_first_column_name(self) -> None:
        assert rows(read_csv, b"\xef\xbb\xbfid,name\n1,x\n") == [(2, {"id": "1", "name": "x"})]

    def test_empty_file_and_header_only(self) -> None:
        assert rows(read_csv, b"") == []
        assert rows(read_csv, b"a,b\n") == []

    def test_values_are_not_stripped_or_typed(self) -> None:
        assert rows(read_csv, b"a,b\n 1 ,\n") == [(2, {"a": " 1 ", "b": ""})]

    def test_gzip_file(self, tmp_path: Path) -> None:
        p = tmp_path / "x.csv.gz"
        text = 'id,title\n1,"multi\nline"\n2,two\n\n3,three\n'
        with gzip.open(p, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
        with open_binary(p) as fh:
            out = list(read_csv(fh))
        assert out == [
            (2, {"id": "1", "title": "multi\nline"}),
            (4, {"id": "2", "title": "two"}),
            (6, {"id": "3", "title": "three"}),
        ]


# -- formats and the registry ---------------------------------------------------------------------
class TestFormats:
    @pytest.mark.parametrize(
        "name, fmt",
        [
            ("styles.jsonl", "jsonl"), ("styles.jsonl.gz", "jsonl"), ("X.JSONL.GZ", "jsonl"),
            ("a.ndjson", "jsonl"), ("a.ndjson.gz", "jsonl"), ("products.csv", "csv"),
            ("products.csv.gz", "csv"), ("dir.v2/products.CSV", "csv"),
        ],
    )
    def test_format_of(self, name: str, fmt: str) -> None:
        assert format_of(Path(name)) == fmt

    @pytest.mark.parametrize("name", ["data.xml", "data.parquet", "data.gz", "data", "data.txt.gz"])
    def test_unknown_extension_is_an_ingest_error(self, name: str) -> None:
        with pytest.raises(IngestError) as ei:
            format_of(Path(name))
        msg = str(ei.value)
        assert name in msg
        assert "format" in msg
        for valid in ("csv", "jsonl"):
            assert valid in msg

    def test_get_reader(self) -> None:
        assert get_reader("jsonl") is read_jsonl
        assert get_reader("csv") is read_csv
        assert READERS["csv"] is read_csv

    def test_get_reader_unknown_name_lists_valid_ones(self) -> None:
        with pytest.raises(IngestError) as ei:
            get_reader("parquet")
        msg = str(ei.value)
        assert "parquet" in msg
        for valid in READERS:
            assert valid in msg
