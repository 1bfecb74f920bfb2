"""Unit tests for the named query library (queries/__init__.py and queries/*.cypher); no Neo4j."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import queries
from queries import NamedQuery, Param, QueryError, parse

QUERY_DIR = Path(queries.__file__).resolve().parent
CYPHER_FILES = sorted(QUERY_DIR.glob("*.cypher"))
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def write(tmp_path: Path, text: str, name: str = "q.cypher") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def header_and_body(text: str) -> tuple[list[str], str]:
    lines = text.splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("//")), len(lines))
    return lines[:n], "\n".join(lines[n:])


# -- the shipped library ------------------------------------------------------------------------
def test_the_library_is_not_empty() -> None:
    assert len(CYPHER_FILES) >= 5
    assert set(queries.load_all()) == {f.stem for f in CYPHER_FILES}


@pytest.mark.parametrize("path", CYPHER_FILES, ids=lambda p: p.stem)
def test_shipped_query_parses_and_is_well_formed(path: Path) -> None:
    q = parse(path)
    text = path.read_text(encoding="utf-8")
    header, body = header_and_body(text)
    assert q.name == path.stem
    assert q.text == text
    assert q.description.strip() and not q.description.lower().startswith("param")
    assert body.strip(), "a query needs Cypher after its header"
    # every "// param:" line of the header became one parameter, names unique and valid
    declared = [line for line in header if re.match(r"^//\s*param:", line)]
    assert len(q.params) == len(declared)
    names = [p.name for p in q.params]
    assert len(names) == len(set(names)), f"duplicate parameter in {path.name}"
    for p in q.params:
        assert re.fullmatch(r"[A-Za-z_]\w*", p.name)
        assert p.type in _TYPES
        assert p.help, f"{path.name}: parameter {p.name} has no help text"
        if not p.required and p.default is not None:
            assert isinstance(p.default, _TYPES[p.type]) and not (p.type == "int" and isinstance(p.default, bool))
    # the Cypher uses exactly the declared parameters
    used = set(re.findall(r"\$([A-Za-z_]\w*)", body))
    assert used == set(names), f"{path.name}: used {sorted(used)} declared {sorted(names)}"


@pytest.mark.parametrize("path", CYPHER_FILES, ids=lambda p: p.stem)
def test_shipped_query_binds_with_only_its_required_params(path: Path) -> None:
    q = parse(path)
    values = {p.name: "x" if p.type == "str" else "1" for p in q.params if p.required}
    bound = q.bind(values)
    assert set(bound) == {p.name for p in q.params}
    for p in q.params:
        if not p.required:
            assert bound[p.name] == p.default


def test_get_known_and_unknown() -> None:
    some = CYPHER_FILES[0].stem
    assert queries.get(some).name == some
    with pytest.raises(QueryError) as ei:
        queries.get("no_such_query")
    assert "no_such_query" in str(ei.value)
    assert some in str(ei.value)  # lists the available ones


# -- bind ----------------------------------------------------------------------------------------
@pytest.fixture()
def q(tmp_path: Path) -> NamedQuery:
    return parse(write(tmp_path, (
        "// Test query: everything about binding.\n"
        "// param: attribute: str                 the attribute name\n"
        "// param: limit: int = 100               at most this many rows\n"
        "// param: ratio: float = 0.5             a threshold\n"
        "// param: strict: bool = false           only exact matches\n"
        "// param: category: str = null          optional category\n"
        "// param: label: str = 'all items'       quoted default\n"
        "MATCH (n) WHERE n.a = $attribute RETURN n LIMIT $limit\n"
    ), "binding.cypher"))


def test_parse_reads_description_and_params(q: NamedQuery) -> None:
    assert q.name == "binding"
    assert q.description == "Test query: everything about binding."
    assert [(p.name, p.type) for p in q.params] == [
        ("attribute", "str"), ("limit", "int"), ("ratio", "float"), ("strict", "bool"), ("category", "str"), ("label", "str"),
    ]
    by = {p.name: p for p in q.params}
    assert by["attribute"].required and not by["limit"].required
    assert by["limit"].default == 100 and type(by["limit"].default) is int
    assert by["ratio"].default == 0.5
    assert by["strict"].default is False
    assert by["category"].default is None and not by["category"].required
    assert by["limit"].help == "at most this many rows"


def test_bind_applies_defaults(q: NamedQuery) -> None:
    assert q.bind({"attribute": "Fabric"}) == {
        "attribute": "Fabric", "limit": 100, "ratio": 0.5, "strict": False, "category": None, "label": "all items",
    }


def test_bind_coerces_cli_strings(q: NamedQuery) -> None:
    b = q.bind({"attribute": "Fabric", "limit": " 7 ", "ratio": "1.25", "strict": "yes", "category": "Apparel"})
    assert b["limit"] == 7 and type(b["limit"]) is int
    assert b["ratio"] == 1.25 and type(b["ratio"]) is float
    assert b["strict"] is True
    assert b["category"] == "Apparel"


@pytest.mark.parametrize("raw, expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                           ("false", False), ("False", False), ("0", False), ("no", False)])
def test_bool_strings(q: NamedQuery, raw: str, expected: bool) -> None:
    assert q.bind({"attribute": "a", "strict": raw})["strict"] is expected


def test_bind_keeps_python_values_of_the_right_type(q: NamedQuery) -> None:
    b = q.bind({"attribute": "a", "limit": 5, "ratio": 2, "strict": True})
    assert b["limit"] == 5 and b["strict"] is True
    assert b["ratio"] == 2.0 and type(b["ratio"]) is float  # an int is a fine float
    assert q.bind({"attribute": "a", "category": None})["category"] is None


@pytest.mark.parametrize("name, value", [("limit", "ten"), ("limit", "1.5"), ("limit", ""), ("ratio", "abc"),
                                         ("strict", "maybe"), ("limit", True), ("limit", 2.0), ("attribute", 5)])
def test_bind_rejects_values_of_the_wrong_type(q: NamedQuery, name: str, value: object) -> None:
    values = {"attribute": "a", name: value}
    with pytest.raises(QueryError) as ei:
        q.bind(values)
    msg = str(ei.value)
    assert repr(name) in msg and "binding" in msg


def test_bind_rejects_unknown_params_naming_them(q: NamedQuery) -> None:
    with pytest.raises(QueryError) as ei:
        q.bind({"attribute": "a", "limt": "5", "colour": "x"})
    msg = str(ei.value)
    assert "'limt'" in msg and "'colour'" in msg
    assert "limit" in msg  # and lists the real ones


def test_bind_rejects_missing_required_naming_it(q: NamedQuery) -> None:
    with pytest.raises(QueryError) as ei:
        q.bind({"limit": "5"})
    msg = str(ei.value)
    assert "'attribute'" in msg and "str" in msg
    assert "the attribute name" in msg  # the help text


def test_query_without_params(tmp_path: Path) -> None:
    nq = parse(write(tmp_path, "// Count nodes.\nMATCH (n) RETURN count(n)\n"))
    assert nq.params == () and nq.bind({}) == {}
    with pytest.raises(QueryError) as ei:
        nq.bind({"x": 1})
    assert "'x'" in str(ei.value) and "(none)" in str(ei.value)


def test_multi_line_description(tmp_path: Path) -> None:
    nq = parse(write(tmp_path, "// First part,\n// second part.\n// param: n: int = 1   n\nRETURN $n\n"))
    assert nq.description == "First part, second part."


def test_param_coerce_directly() -> None:
    assert Param("n", "int").coerce("42", "q") == 42
    assert Param("n", "float").coerce("1e3", "q") == 1000.0
    assert Param("s", "str").coerce("  keep spaces ", "q") == "  keep spaces "
    with pytest.raises(QueryError):
        Param("n", "int").coerce("4x", "q")


# -- malformed headers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_line",
    [
        "// param: limit int = 5      missing colon",
        "// param: limit: integer = 5  unknown type",
        "// param: 1limit: int = 5    bad name",
        "// param:",
        "// param: limit:",
    ],
)
def test_malformed_param_line_names_file_and_line(tmp_path: Path, bad_line: str) -> None:
    p = write(tmp_path, f"// A query.\n// param: ok: str   fine\n{bad_line}\nRETURN 1\n", "broken.cypher")
    with pytest.raises(QueryError) as ei:
        parse(p)
    assert f"{p}:3:" in str(ei.value)


def test_bad_default_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "// A query.\n// param: limit: int = ten   at most\nRETURN $limit\n", "baddefault.cypher")
    with pytest.raises(QueryError) as ei:
        parse(p)
    msg = str(ei.value)
    assert f"{p}:2:" in msg and "'ten'" in msg and "int" in msg


def test_missing_description_names_file(tmp_path: Path) -> None:
    p = write(tmp_path, "// param: n: int = 1   n\nRETURN $n\n", "nodesc.cypher")
    with pytest.raises(QueryError) as ei:
        parse(p)
    assert str(p) in str(ei.value)
    p2 = write(tmp_path, "MATCH (n) RETURN n\n", "nocomment.cypher")
    with pytest.raises(QueryError) as ei:
        parse(p2)
    assert str(p2) in str(ei.value)


def test_comments_after_the_header_are_cypher(tmp_path: Path) -> None:
    # only the leading comment block is the header; "// param:" later in the body is not a parameter
    nq = parse(write(tmp_path, "// A query.\nRETURN 1\n// param: x: int   not a param\n"))
    assert nq.params == ()
