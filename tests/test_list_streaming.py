"""A `kubectl get -o yaml` List is read item by item (manifests._list_items), so that a
100,000-object dump never exists as one YAML node graph. What it yields must be what
the whole-document parse yields, item for item, for every dump PyYAML or kubectl
writes; anything of another shape falls back to the whole parse."""

import yaml
from hypothesis import given, settings, strategies as st

from pipeline.load.manifests import Document, _list_items, flatten, read_documents

scalars = st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none(),
                    st.text(alphabet="ab \n:-#'\"|>", max_size=20))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(min_size=1, max_size=8), kids,
                                                                      max_size=4)), max_leaves=12)
items = st.lists(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=5), min_size=1, max_size=6)


def read(source, text):
    return [(d.item, d.body) for doc in read_documents(source, text) for d in flatten(doc)]


def whole(source, text):
    return [(d.item, d.body) for doc in
            (Document(source, i, b) for i, b in enumerate(yaml.safe_load_all(text)) if b is not None)
            for d in flatten(doc)]


@settings(max_examples=300, deadline=None)
@given(items, st.sampled_from(["List", "PodList"]), st.booleans(), st.booleans())
def test_item_by_item_equals_the_whole_parse(objs, kind, kubectl_order, block_style):
    body = {"apiVersion": "v1", "items": objs, "kind": kind, "metadata": {"resourceVersion": ""}} if kubectl_order \
        else {"apiVersion": "v1", "kind": kind, "items": objs}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False if block_style else None)
    assert read("dump.yaml", text) == whole("dump.yaml", text)


def test_kubectl_shapes_take_the_item_path_and_others_fall_back():
    dump = ("apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: a\n"
            "    annotations:\n      note: |\n        two\n        lines\n\n- metadata: {name: b}\n"
            "kind: List\nmetadata:\n  resourceVersion: \"\"\n")
    assert _list_items("d", dump) is not None
    first = next(iter(read_documents("d", dump)))
    assert first.body["metadata"]["annotations"]["note"] == "two\nlines\n"
    assert read("d", dump) == whole("d", dump)
    for other in (dump.replace("kind: List", "kind: Pod"),                      # not a List
                  "# a comment\n" + dump,                                       # comments: whole parse
                  dump.replace("- metadata: {name: b}", "- metadata: &m {name: b}\n- metadata: *m"),
                  "items: []\nkind: List\n",
                  "kind: List\nitems:\n  - {a: 1}\n"):                          # an indented sequence
        assert _list_items("d", other) is None, other
        assert read("d", other) == whole("d", other)


def test_a_bad_item_is_named_with_its_line():
    dump = "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: a}\n- metadata: {name: [}\n"
    try:
        list(read_documents("d.yaml", dump))
    except Exception as e:
        assert str(e).startswith("d.yaml:0:items[1]: YAML syntax error at line 5"), str(e)
    else:
        raise AssertionError("a syntax error went through")
