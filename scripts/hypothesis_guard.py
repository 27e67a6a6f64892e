# Installed into .tools/venv by scripts/install.sh (schemathesis only), loaded at start-up by a
# .pth file (Debian's own sitecustomize.py would shadow one of ours).
# CPython 3.11 can raise "SystemError: AST constructor recursion depth mismatch" when hypothesis
# parses a source file deep in the stack just to *describe* a lambda for a strategy's repr
# (fixed in Python 3.12). The description is cosmetic: fall back to a plain one instead of
# failing the run. Debian 12 ships only Python 3.11.
try:
    import hypothesis.internal.lambda_sources as _sources

    _describe = _sources._lambda_description

    def _lambda_description(f, *args, **kwargs):
        try:
            return _describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <source not shown>"

    _sources._lambda_description = _lambda_description
except Exception:  # hypothesis missing or changed: nothing to guard
    pass
