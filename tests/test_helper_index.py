"""The helpers' `ast` index against LibCST's reading of the same files: each definition parsed on
its own is the statement the whole file gives, and its dependencies are the names LibCST finds in it
(static form and scoped form)."""
import libcst as cst
import pytest

from retarget.helper_index import SUPPORT_DIR, SUPPORT_FILES, helper_index
from retarget.rewrite.support import SupportLibrary, _defined_name, _DropDefaultRngs, _Names

INDEX = helper_index()


def _whole_files() -> dict[str, cst.CSTNode]:
    found = {}
    for file in SUPPORT_FILES:
        for stmt in cst.parse_module((SUPPORT_DIR / file).read_text()).body:
            if name := _defined_name(stmt):
                found[name] = stmt
    return found


WHOLE = _whole_files()


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[node]).code


def _references(node: cst.CSTNode, name: str) -> set[str]:
    visitor = _Names()
    node.visit(visitor)
    return (visitor.names & set(WHOLE)) - {name}


def test_the_index_holds_every_definition_in_source_order():
    assert list(INDEX.definitions) == list(WHOLE)


@pytest.mark.parametrize("scoped", [False, True])
def test_each_definition_parsed_alone_is_the_files_statement(scoped):
    library = SupportLibrary()
    for name, stmt in WHOLE.items():
        expected = stmt if scoped else stmt.visit(_DropDefaultRngs())
        assert _code(library.node(name, scoped)) == _code(expected), name


def test_dependencies_are_the_names_libcst_finds():
    for name, stmt in WHOLE.items():
        static = stmt.visit(_DropDefaultRngs())
        assert INDEX.deps(name) == _references(static, name), name
        assert INDEX.deps(name, scoped=True) == _references(stmt, name), name
        assert INDEX.scoped(name) == (not static.deep_equals(stmt)), name


def test_a_static_form_leaves_out_default_rngs_and_what_draws_from_the_layer_being_built():
    scoped = [name for name in INDEX.definitions if INDEX.scoped(name)]
    assert scoped, "the helpers have @default_rngs forms"
    for name in scoped:
        assert "default_rngs" not in INDEX.deps(name) and "default_rngs" in INDEX.deps(name, True) | {name}, name


def test_the_stored_index_is_the_files_own():
    """`support/_index.json` (read at start-up instead of parsing the helper files) was written from the
    files as they are; after editing a helper, `python -c "from retarget.helper_index import HelperIndex;
    HelperIndex().write()"` writes it again (until then the files are read, so output stays right)."""
    from retarget.helper_index import INDEX_FILE, HelperIndex, _stored_index
    index = HelperIndex()
    stored = _stored_index(SUPPORT_FILES, index.digest())
    assert stored is not None, f"{INDEX_FILE} is stale: write it again"
    assert stored == index.scan()
    assert _stored_index(SUPPORT_FILES, "0" * 64) is None  # another digest: the files are read
