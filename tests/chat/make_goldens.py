#!/usr/bin/env python3
"""Regenerates tests/chat/goldens/ with the real transformers (reference environment only:
/opt/refpy/bin/python has transformers and gguf; CI does not).

  /opt/refpy/bin/python tests/chat/make_goldens.py

- goldens/transformers_cases.json: chat_cases rendered by transformers itself
  (tokenizer.apply_chat_template where the folder loads as a tokenizer, else transformers'
  render_jinja_template after its own message normalization). compare_with_jinja2.py checks our
  renderer against these, so the jinja2 reference it builds cannot drift from transformers.
- goldens/smollm2_gguf.json: the GGUF's chat template and special tokens as the gguf package
  reads them, checked against our GGUF loader by chat_template_test.
"""
import json
import os
import sys

from gguf import GGUFReader
from transformers import AutoTokenizer
from transformers.utils import chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chat_cases  # noqa: E402

GGUF = os.environ.get("ITE_MODEL_GGUF",
                      os.path.join(chat_cases.SOURCE_DIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def gguf_template(path):
    r = GGUFReader(path)

    def field(key):
        f = r.fields[key]
        return f.parts[f.data[0]]

    tokens = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in r.fields["tokenizer.ggml.tokens"].data]
    special = {}
    for key, name in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"),
                      ("unknown_token_id", "unk_token"), ("padding_token_id", "pad_token")):
        full = "tokenizer.ggml." + key
        if full in r.fields:
            special[name] = tokens[int(field(full)[0])]
    return bytes(field("tokenizer.chat_template")).decode("utf-8"), special


def render_with_transformers(source, special, case):
    extra = dict(case["extra"])
    tools = extra.pop("tools", None)
    documents = extra.pop("documents", None)
    conversations = [ctu._normalize_chat_messages(case["messages"])]
    rendered, _ = ctu.render_jinja_template(
        conversations=conversations, tools=tools, documents=documents, chat_template=source,
        add_generation_prompt=case["add_generation_prompt"], **{**special, **extra})
    return rendered[0]


def main():
    source, special = gguf_template(GGUF)
    case = {"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": True,
            "extra": {}}
    with open(os.path.join(HERE, "goldens", "smollm2_gguf.json"), "w", encoding="utf-8") as f:
        json.dump({"chat_template": source, **special,
                   "rendered_hi": render_with_transformers(source, special, case)}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")

    tokenizers = {}
    goldens = {}
    for case in chat_cases.all_cases(GGUF):
        if "long_message" in case["name"]:
            continue  # keeps the golden file small; the jinja2 comparison covers it
        path = case["template"]
        try:
            if path.endswith(".json"):
                folder = os.path.dirname(path)
                if folder not in tokenizers:
                    try:
                        tokenizers[folder] = AutoTokenizer.from_pretrained(folder)
                    except Exception:  # e.g. llama3_1 ships only tokenizer_config.json
                        tokenizers[folder] = None
                tok = tokenizers[folder]
                if tok is not None:
                    extra = dict(case["extra"])
                    text = tok.apply_chat_template(
                        case["messages"], tools=extra.pop("tools", None), tokenize=False,
                        add_generation_prompt=case["add_generation_prompt"], **extra)
                else:
                    with open(path, encoding="utf-8") as f:
                        config = json.load(f)
                    special = {k: config[k] for k in ("bos_token", "eos_token")
                               if config.get(k) is not None}
                    text = render_with_transformers(config["chat_template"], special, case)
            elif path.endswith(".gguf"):
                text = render_with_transformers(source, special, case)
            else:
                with open(path, encoding="utf-8") as f:
                    text = render_with_transformers(f.read(), {}, case)
            goldens[case["name"]] = {"ok": True, "text": text}
        except Exception as e:
            goldens[case["name"]] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(HERE, "goldens", "transformers_cases.json"), "w",
              encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=0, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(goldens)} transformers goldens "
          f"({sum(not g['ok'] for g in goldens.values())} errors)")


if __name__ == "__main__":
    main()
