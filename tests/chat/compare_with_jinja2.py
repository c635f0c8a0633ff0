#!/usr/bin/env python3
"""Renders every case of chat_cases.py with our C++ renderer (ite_chat_render) and with Python
jinja2 set up exactly as transformers' apply_chat_template sets it up, and requires
byte-identical output; cases where jinja2 raises must fail in ours too.

Also checks the C++ output against goldens/transformers_cases.json, rendered by the real
transformers (make_goldens.py), which guards the Python reference below against drift.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_cases  # noqa: E402


class GenerationTag(Extension):
    """transformers' {% generation %} tag; renders its body unchanged (no mask tracking here)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class TemplateNamespace(jinja2.utils.Namespace):
    """transformers' namespace: rejects underscore-prefixed attributes."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            TemplateNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        TemplateNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"underscore attribute {name!r}")


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = lambda *a, **k: dict(*a, **k)
    env.globals["namespace"] = TemplateNamespace
    return env


REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def normalize(messages):
    """transformers' _normalize_chat_messages + _alias_reasoning_fields."""
    out = []
    for m in messages:
        m = {k: v for k, v in m.items() if v is not None}
        r = next((m[k] for k in REASONING_FIELDS if m.get(k) is not None), None)
        if r is not None:
            m = {"thinking": r, **m, "reasoning_content": r}
        out.append(m)
    return out


def token_content(v):
    return v.get("content") if isinstance(v, dict) else v


def load_template(path, render_bin):
    """(source, special tokens) read independently of our C++ loader, except for GGUF files,
    whose metadata this venv cannot read (the C++ GGUF extraction is checked against a golden
    made with the gguf package in chat_template_test)."""
    if path.endswith(".jinja"):
        with open(path, encoding="utf-8") as f:
            return f.read(), {}
    if path.endswith(".gguf"):
        dumped = json.loads(subprocess.run([render_bin, "--dump", path], check=True,
                                           capture_output=True, text=True).stdout)
        return dumped["source"], dumped["special_tokens"]
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    tokens = {}
    for name in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token"):
        if config.get(name) is not None:
            tokens[name] = token_content(config[name])
    return config["chat_template"], tokens


def render_reference(env, source, tokens, case):
    extra = dict(case["extra"])
    tools = extra.pop("tools", None)
    documents = extra.pop("documents", None)
    kwargs = {**tokens, **extra}
    template = env.from_string(source)
    return template.render(messages=normalize(case["messages"]), tools=tools, documents=documents,
                           add_generation_prompt=case["add_generation_prompt"], **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render-bin", required=True)
    ap.add_argument("--tokenize-bin", help="also check `ite-tokenize --chat-template` output")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    gguf = os.environ.get("ITE_MODEL_GGUF", "")
    if gguf and not os.path.exists(gguf):
        print(f"note: no model GGUF at {gguf}; skipping its cases")
        gguf = ""
    for path in chat_cases.CONFIG_TEMPLATES.values():
        if not os.path.exists(path):
            print(f"missing shared tokenizer config {path}")
            return 1
    cases = chat_cases.all_cases(gguf)

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
        cases_path = f.name
    try:
        proc = subprocess.run([args.render_bin, cases_path], capture_output=True, text=True)
    finally:
        os.unlink(cases_path)
    if proc.returncode != 0:
        print("ite_chat_render failed:", proc.stderr)
        return 1
    ours = [json.loads(line) for line in proc.stdout.split("\n") if line]
    if len(ours) != len(cases):
        print(f"expected {len(cases)} results, got {len(ours)}")
        return 1

    env = make_env()
    loaded = {}
    failures = 0
    errors_both = 0
    for case, got in zip(cases, ours):
        if case["template"] not in loaded:
            loaded[case["template"]] = load_template(case["template"], args.render_bin)
        source, tokens = loaded[case["template"]]
        try:
            want = {"ok": True, "text": render_reference(env, source, tokens, case)}
        except Exception as e:  # jinja2 raised: ours must fail too
            want = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if want["ok"] != got["ok"] or (want["ok"] and want["text"] != got["text"]):
            failures += 1
            print(f"MISMATCH {case['name']}")
            print(f"  jinja2: {json.dumps(want, ensure_ascii=False)[:3000]}")
            print(f"  ours:   {json.dumps(got, ensure_ascii=False)[:3000]}")
        elif not want["ok"]:
            errors_both += 1
            if args.verbose:
                print(f"both failed {case['name']}: jinja2 '{want['error']}' / ours '{got['error']}'")

    golden_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens",
                               "transformers_cases.json")
    golden_checked = 0
    if os.path.exists(golden_path):
        with open(golden_path, encoding="utf-8") as f:
            goldens = json.load(f)
        by_name = {c["name"]: r for c, r in zip(cases, ours)}
        for name, want in goldens.items():
            got = by_name.get(name)
            if got is None:
                continue  # e.g. GGUF cases when no model is present
            golden_checked += 1
            if want["ok"] != got["ok"] or (want["ok"] and want["text"] != got["text"]):
                failures += 1
                print(f"MISMATCH vs transformers golden {name}")
                print(f"  transformers: {json.dumps(want, ensure_ascii=False)[:2000]}")
                print(f"  ours:         {json.dumps(got, ensure_ascii=False)[:2000]}")

    cli_checked = 0
    if args.tokenize_bin:
        # ite-tokenize renders with add_generation_prompt=true; a line object carries the extras.
        for template in sorted({c["template"] for c in cases}):
            picked = [(c, r) for c, r in zip(cases, ours)
                      if c["template"] == template and c["add_generation_prompt"] and r["ok"]]
            lines = "".join(json.dumps({"messages": c["messages"], **c["extra"]},
                                       ensure_ascii=False) + "\n" for c, _ in picked)
            proc = subprocess.run([args.tokenize_bin, "--chat-template", template], input=lines,
                                  capture_output=True, text=True)
            outs = [json.loads(line) for line in proc.stdout.split("\n") if line]
            if proc.returncode != 0 or len(outs) != len(picked):
                failures += 1
                print(f"ite-tokenize failed on {template}: rc={proc.returncode} {proc.stderr}")
                continue
            for (c, r), text in zip(picked, outs):
                cli_checked += 1
                if text != r["text"]:
                    failures += 1
                    print(f"MISMATCH ite-tokenize {c['name']}")

    templates = sorted({c["template"] for c in cases})
    print(f"{len(cases)} cases over {len(templates)} templates: {len(cases) - failures} identical "
          f"({errors_both} error in both), {failures} mismatches; {golden_checked} transformers "
          f"goldens checked; {cli_checked} ite-tokenize outputs checked")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
