#!/usr/bin/env python3
"""Compares ite-tokenize with Hugging Face `tokenizers` on corpus.jsonl, exactly.

For each tokenizer: encode without and with special tokens, decode of HF's ids (special tokens
kept), and round trips decode(encode(s)) == s wherever HF's own round trip holds. Prints pass
counts per tokenizer and the first mismatches; exits 1 on any mismatch.

  compare_hf.py --bin build/bin/ite-tokenize --json NAME=PATH/tokenizer.json ... --gguf NAME=FILE

Variants (--variant KIND=BASE_tokenizer.json) edit a real file to cover what the shipped files do
not use, write it to a temp dir, and compare the same way on the corpus plus extra strings:
  added_flags:  added tokens with lstrip / rstrip / single_word / normalized=true (on qwen3: NFC)
  metaspace:    Llama 2 in the newer layout: no normalizer, Metaspace pre-tokenizer
                (prepend_scheme "first", split false) and Metaspace decoder
  bos_eos:      post-processor Sequence[ByteLevel, TemplateProcessing(BOS $A EOS)] (Llama 3 style)

  spm_gguf:     the Llama 2 vocabulary written as a SentencePiece ("llama") GGUF: a piece's score
                is minus the rank of the first merge that makes it (pieces no merge makes rank
                below all), token types unknown/control/byte/normal; so our score-derived merges
                are checked against HF loading the original tokenizer.json
  gguf_PRE:     a byte-level tokenizer.json (llama3, qwen3) written as a "gpt2" GGUF with
                tokenizer.ggml.pre = PRE (llama-bpe, qwen2): checks our pre-tokenizer choice for
                that name against HF loading the original file

GGUF reference: the GGUF's tokens / merges / token types are read with the small reader below
(no `gguf` package needed) and turned into a `tokenizers` BPE with the pre-tokenizer of SmolLM2's
tokenizer.json (Digits(individual_digits) + ByteLevel(use_regex)), control tokens (type 3) as
special added tokens, user-defined ones (type 4) as plain added tokens and a ByteLevel decoder.
Only tokenizer.ggml.pre values with that pre-tokenizer (smollm, starcoder, refact) are accepted.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import unicodedata

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def read_gguf_metadata(path):
    """The key/value metadata of a GGUF file (v2/v3), without tensors."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", errors="surrogateescape")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {t}")

    magic, version = take("4s"), take("I")
    if magic != b"GGUF" or version not in (2, 3):
        raise ValueError(f"{path}: not a GGUF v2/v3 file")
    _n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("I"))
    return meta


def hf_from_gguf(path):
    meta = read_gguf_metadata(path)
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path}: only gpt2 GGUF vocabularies are supported by this reference")
    pre = meta.get("tokenizer.ggml.pre", "")
    if pre not in ("smollm", "starcoder", "refact"):
        raise ValueError(f"{path}: no HF reference pre-tokenizer for tokenizer.ggml.pre={pre!r}")
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    added = [AddedToken(t, special=(ty == 3), normalized=False)
             for t, ty in zip(tokens, types) if ty in (3, 4) and t]
    tok.add_tokens(added)
    if meta.get("tokenizer.ggml.add_bos_token", False):
        raise ValueError(f"{path}: add_bos_token GGUFs need a post-processor in this reference")
    return tok


def write_gguf(path, kv):
    """Writes a GGUF v3 file with metadata only. kv: list of (key, type, value); type is a GGUF
    value type number, or (9, element_type) for arrays."""
    fmt = {4: "<I", 5: "<i", 6: "<f", 7: "<?"}

    def s(x):
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)))
    for key, typ, val in kv:
        out += s(key)
        if isinstance(typ, tuple):
            out += struct.pack("<IIQ", 9, typ[1], len(val))
            for v in val:
                out += s(v) if typ[1] == 8 else struct.pack(fmt[typ[1]], v)
        else:
            out += struct.pack("<I", typ) + (s(val) if typ == 8 else struct.pack(fmt[typ], val))
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as f:
        f.write(out)


def make_spm_gguf(base_path, out_dir):
    with open(base_path, encoding="utf-8") as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["content"] for a in j["added_tokens"] if a["special"]}
    types = []
    for t in tokens:
        if t == j["model"]["unk_token"]:
            types.append(2)
        elif t in special:
            types.append(3)
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            types.append(6)
        else:
            types.append(1)
    first_rank = {}
    for rank, m in enumerate(j["model"]["merges"]):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        first_rank.setdefault(a + b, rank)
    scores = [float(-first_rank.get(t, 100000 + i)) if ty == 1 else 0.0
              for i, (t, ty) in enumerate(zip(tokens, types))]
    path = os.path.join(out_dir, "spm.gguf")
    write_gguf(path, [
        ("general.architecture", 8, "llama"),
        ("tokenizer.ggml.model", 8, "llama"),
        ("tokenizer.ggml.tokens", (9, 8), tokens),
        ("tokenizer.ggml.scores", (9, 6), scores),
        ("tokenizer.ggml.token_type", (9, 5), types),
        ("tokenizer.ggml.bos_token_id", 4, vocab["<s>"]),
        ("tokenizer.ggml.eos_token_id", 4, vocab["</s>"]),
        ("tokenizer.ggml.unknown_token_id", 4, vocab[j["model"]["unk_token"]]),
        ("tokenizer.ggml.add_bos_token", 7, True),
        ("tokenizer.ggml.add_space_prefix", 7, True),
    ])
    return path


def make_bpe_gguf(base_path, pre, out_dir):
    with open(base_path, encoding="utf-8") as f:
        j = json.load(f)
    n = max(max(j["model"]["vocab"].values()), max(a["id"] for a in j["added_tokens"])) + 1
    tokens = [f"[UNUSED_{i}]" for i in range(n)]  # holes never occur in the real files
    types = [1] * n
    for t, i in j["model"]["vocab"].items():
        tokens[i] = t
    for a in j["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = 3 if a["special"] else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    path = os.path.join(out_dir, f"bpe_{pre}.gguf")
    write_gguf(path, [
        ("general.architecture", 8, "llama"),
        ("tokenizer.ggml.model", 8, "gpt2"),
        ("tokenizer.ggml.pre", 8, pre),
        ("tokenizer.ggml.tokens", (9, 8), tokens),
        ("tokenizer.ggml.token_type", (9, 5), types),
        ("tokenizer.ggml.merges", (9, 8), merges),
        ("tokenizer.ggml.add_bos_token", 7, False),
    ])
    return path


def make_variant(kind, base_path, out_dir):
    """Writes an edited copy of base_path; returns (path, extra strings to test)."""
    with open(base_path, encoding="utf-8") as f:
        j = json.load(f)
    extra = []
    if kind == "added_flags":
        next_id = max(max(j["model"]["vocab"].values()),
                      max(a["id"] for a in j["added_tokens"])) + 1
        flags = [("<mask>", dict(lstrip=True, special=True, normalized=False)),
                 ("[SEP]", dict(rstrip=True, special=True, normalized=False)),
                 ("<both>", dict(lstrip=True, rstrip=True, special=False, normalized=False)),
                 ("hello", dict(single_word=True, special=False, normalized=True)),
                 ("caf\u00e9", dict(special=False, normalized=True)),  # NFC form, matched after NFC
                 ("wor", dict(single_word=True, special=False, normalized=False))]
        for i, (content, f) in enumerate(flags):
            tok = dict(id=next_id + i, content=content, single_word=False, lstrip=False,
                       rstrip=False, normalized=False, special=False)
            tok.update(f)
            j["added_tokens"].append(tok)
        pieces = ["<mask>", "[SEP]", "<both>", "hello", "Hello", "caf\u00e9",
                  unicodedata.normalize("NFD", "caf\u00e9"), "wor", "world", "sword", "<|im_end|>"]
        seps = ["", " ", "  ", "\t", "\n", " \n ", "x", "_", "1", "\u00e9", "\u3000"]
        for a in pieces:
            for b in pieces:
                for s in seps:
                    extra.append(f"{s}{a}{s}{b}{s}")
    elif kind == "metaspace":
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                              "prepend_scheme": "first", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
             "split": False},
            {"type": "ByteFallback"}, {"type": "Fuse"}]}
    elif kind == "bos_eos":
        bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
        ids = {a["content"]: a["id"] for a in j["added_tokens"]}
        j["post_processor"] = {"type": "Sequence", "processors": [
            j["post_processor"],
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": eos, "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [ids[bos]], "tokens": [bos]},
                                eos: {"id": eos, "ids": [ids[eos]], "tokens": [eos]}}}]}
    else:
        raise ValueError(f"unknown variant {kind}")
    path = os.path.join(out_dir, f"{kind}.tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return path, extra


def run_tool(binary, tokenizer, lines, extra):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "--tokenizer", tokenizer] + extra, input="\n".join(lines) + "\n",
                       capture_output=True, text=True, encoding="utf-8")
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"ite-tokenize {' '.join(extra)} failed ({p.returncode}): {p.stderr}")
    # split("\n"), not splitlines(): JSON output may hold raw U+2028 or \x1c.
    out = [json.loads(l) for l in p.stdout.split("\n")[:-1]]
    if len(out) != len(lines):
        raise RuntimeError(f"ite-tokenize gave {len(out)} lines for {len(lines)} inputs")
    return out, elapsed


def check(name, what, texts, got, want, failures, limit=5):
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    for i in bad[:limit]:
        failures.append(f"  [{name} {what}] #{i} {texts[i]!r}\n     ours: {got[i]}\n     HF:   {want[i]}")
    passed = len(texts) - len(bad)
    print(f"{name}: {what}: {passed}/{len(texts)} match")
    return not bad


def compare(name, spec, hf, binary, corpus):
    lines = [json.dumps(s) for s in corpus]
    failures = []
    ok = True
    t0 = time.perf_counter()
    want_plain = [e.ids for e in hf.encode_batch(corpus, add_special_tokens=False)]
    hf_time = time.perf_counter() - t0
    want_special = [e.ids for e in hf.encode_batch(corpus, add_special_tokens=True)]
    got_plain, our_time = run_tool(binary, spec, lines, [])
    got_special, _ = run_tool(binary, spec, lines, ["--add-special-tokens"])
    ok &= check(name, "encode", corpus, got_plain, want_plain, failures)
    ok &= check(name, "encode+special", corpus, got_special, want_special, failures)

    want_dec = hf.decode_batch(want_plain, skip_special_tokens=False)
    got_dec, _ = run_tool(binary, spec, [json.dumps(ids) for ids in want_plain], ["--decode"])
    ok &= check(name, "decode", corpus, got_dec, want_dec, failures)
    want_skip = hf.decode_batch(want_special, skip_special_tokens=True)
    got_skip, _ = run_tool(binary, spec, [json.dumps(ids) for ids in want_special],
                           ["--decode", "--skip-special-tokens"])
    ok &= check(name, "decode-skip-special", corpus, got_skip, want_skip, failures)

    # Round trip on our own ids, counted where HF round-trips too.
    ours_rt, _ = run_tool(binary, spec, [json.dumps(ids) for ids in got_plain], ["--decode"])
    rt_idx = [i for i in range(len(corpus)) if want_dec[i] == corpus[i]]
    rt_bad = [i for i in rt_idx if ours_rt[i] != corpus[i]]
    for i in rt_bad[:5]:
        failures.append(f"  [{name} roundtrip] #{i} {corpus[i]!r} -> {ours_rt[i]!r}")
    print(f"{name}: roundtrip: {len(rt_idx) - len(rt_bad)}/{len(rt_idx)} "
          f"(strings HF round-trips: {len(rt_idx)} of {len(corpus)})")
    ok &= not rt_bad
    print(f"{name}: time to encode corpus: ite-tokenize {our_time * 1000:.0f} ms (process incl. "
          f"load), HF encode_batch {hf_time * 1000:.0f} ms (loaded)")
    if failures:
        print("first mismatches:\n" + "\n".join(failures))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "corpus.jsonl"))
    ap.add_argument("--json", action="append", default=[], help="NAME=tokenizer.json")
    ap.add_argument("--gguf", action="append", default=[], help="NAME=model.gguf")
    ap.add_argument("--variant", action="append", default=[], help="KIND=base tokenizer.json")
    args = ap.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        corpus = [json.loads(l) for l in f]
    # Long runs (built here to keep corpus.jsonl small): one huge word, whitespace runs that
    # stress the (?!\S) / [\r\n] alternatives, digit runs, emoji, a long special-token chain.
    corpus += [" " * 20000 + "x", "a" * 30000, "\n \t" * 10000, "1" * 20000,
               "\U0001F600" * 5000, "<|im_start|><s>" * 2000 + "end"]
    all_ok = True
    for item in args.json:
        name, path = item.split("=", 1)
        all_ok &= compare(name, path, Tokenizer.from_file(path), args.bin, corpus)
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.variant:
            kind, base = item.split("=", 1)
            if kind.startswith("gguf_"):
                pre = kind[len("gguf_"):].replace("_", "-")
                all_ok &= compare(f"variant-{kind}", make_bpe_gguf(base, pre, tmp),
                                  Tokenizer.from_file(base), args.bin, corpus)
                continue
            if kind == "spm_gguf":
                all_ok &= compare("variant-spm_gguf", make_spm_gguf(base, tmp),
                                  Tokenizer.from_file(base), args.bin, corpus)
                continue
            path, extra = make_variant(kind, base, tmp)
            all_ok &= compare(f"variant-{kind}", path, Tokenizer.from_file(path), args.bin,
                              corpus + extra)
    for item in args.gguf:
        name, path = item.split("=", 1)
        if not os.path.exists(path):
            print(f"{name}: {path} missing (run scripts/fetch_model.sh)")
            all_ok = False
            continue
        all_ok &= compare(name, path, hf_from_gguf(path), args.bin, corpus)
    print("PASS" if all_ok else "FAIL")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
