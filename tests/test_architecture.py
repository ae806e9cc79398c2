"""The package reads one way (DESIGN.md, "Layout"): imports run from a layer to the layers below it, at module top,
with no cycles, and library code below jobs/ never reads the scripts' absl flags. Parsed from the source, so it
fails on the commit that breaks the rule."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tfx_transfer"

# A module may import modules of its own layer or of a lower one.
LAYERS = {
    "io_utils": 0, "config": 0, "keras_compat": 0, "native_logs": 0, "runtime_defaults": 0, "plot": 0,
    "text": 1, "data": 1, "metrics": 1,
    "layers": 2,
    "encoders": 3,
    "checkpoints": 4,
    "pretrained": 5,
    "models": 6,
    "adaptation": 7,
    "export": 8,
    "jobs": 9,
    "": 10,  # the package's __init__: the public API over everything
}
# The documented entry points that sit over a higher layer, as keras-hub's `from_preset` sits over its preset
# loader: one function-level import each, nothing else.
ENTRY_POINTS = {
    ("tfx_transfer.encoders.bert_encoder", "tfx_transfer.pretrained"),  # BertEncoder.from_pretrained / from_hub
    ("tfx_transfer.text.tokenizer", "tfx_transfer.pretrained"),  # BertTokenizer.from_pretrained
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return LAYERS[top]


def _imports(tree):
    """(imported tfx_transfer module, at module top?, line) for every import statement of the module."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tfx_transfer":
            targets = [node.module] if node.module != "tfx_transfer" else \
                [f"tfx_transfer.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "tfx_transfer"]
        else:
            continue
        for target in targets:
            yield target, id(node) in top, node.lineno


def _resolve(target, known):
    """`from tfx_transfer.x import name` may name a module or an attribute of one: the module it is."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def test_every_module_has_a_layer():
    assert {name for name, _ in _modules()} and all(_layer(name) is not None for name, _ in _modules())


def test_imports_run_downward_at_module_top():
    modules = dict(_modules())
    problems = []
    for name, tree in modules.items():
        for target, at_top, line in _imports(tree):
            target = _resolve(target, modules)
            if (name, target) in ENTRY_POINTS:
                assert not at_top, f"{name}: the entry point's import of {target} must stay inside the function"
                continue
            if not at_top:
                problems.append(f"{name}:{line} imports {target} inside a function")
            if _layer(target) > _layer(name):
                problems.append(f"{name}:{line} imports {target}, a higher layer")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    modules = dict(_modules())
    graph = {name: {_resolve(t, modules) for t, at_top, _ in _imports(tree) if at_top} - {name}
             for name, tree in modules.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_library_code_below_jobs_never_reads_the_flags():
    offenders = []
    for name, tree in _modules():
        if _layer(name) >= LAYERS["jobs"]:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("absl.flags", "absl") and \
                    any(alias.name == "flags" or alias.name == "FLAGS" for alias in node.names):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, offenders
