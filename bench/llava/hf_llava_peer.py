#!/usr/bin/env python3
"""Peer numbers for bench/llava: Hugging Face transformers' LlavaForConditionalGeneration (bf16,
attn_implementation="sdpa") on llava_bench's workloads, on the same GPU in the same run:

    python3 bench/llava/hf_llava_peer.py --model DIR --name llava-1.5-7b --out peers.jsonl \\
        [--text 32] [--iters 10] [--warmup 2] [--device cuda]

  llava_vision_encode  peer "hf": the model's own image path, model.model.get_image_features
                       (the CLIP tower with every hidden state, layer -2 without the class
                       token, the projector), from random pixel values on the host (moved to
                       the device in bf16 inside the timing) to the embeddings: ms per image.
                       Where that method is missing or has another signature, the same steps
                       written out (vision_tower + multi_modal_projector); "path" says which.
  llava_ttft_1image    BOS + the image token repeated for the image's positions (as the
                       processor expands it) + --text random text tokens, with the pixels:
                         peer "hf_generate": model.generate(max_new_tokens=1, greedy), what a
                           transformers user calls;
                         peer "hf_forward": one forward pass (logits of the last row only) and
                           the argmax copied to the host: transformers' floor for a first token.
  llava_ttft_text      the same length without an image, both peers.
Each value is the median of --iters runs after --warmup, each from a device sync to the result
on the host, under torch.inference_mode(). A failing measurement is an "error" line; the rest
go on. Output: one JSON object per line, on stdout and appended to --out:
  {"name", "model", "peer", "value", "unit": "ms", "batch", "prompt_len", "new_tokens", ...}
"""
import argparse
import json
import statistics
import sys
import time

import torch


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Peer:
    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a")
        self.cuda = args.device.startswith("cuda")

    def emit(self, obj):
        obj = dict(obj, model=self.args.name)
        line = json.dumps(obj)
        print(line, flush=True)
        self.out.write(line + "\n")
        self.out.flush()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def median_ms(self, fn):
        for _ in range(self.args.warmup):
            fn()
        times = []
        for _ in range(self.args.iters):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    def measure(self, record, fn):
        """Emits record with the median of fn, or with the error it raised."""
        try:
            self.emit(dict(record, value=self.median_ms(fn), unit="ms"))
        except Exception as e:  # noqa: BLE001 - one failed peer must not stop the others
            log(f"{record['name']} {record['peer']}: {type(e).__name__}: {e}")
            self.emit(dict(record, error=f"{type(e).__name__}: {e}"[:500]))


def image_features_fn(model, cfg, pixels):
    """The model's image path as a function of host pixels, and what it is called."""
    inner = model.model
    to_dev = lambda: pixels.to(device=model.device, dtype=torch.bfloat16)  # noqa: E731
    try:
        inner.get_image_features(pixel_values=to_dev(),
                                 vision_feature_layer=cfg.vision_feature_layer,
                                 vision_feature_select_strategy=cfg.vision_feature_select_strategy)
        return (lambda: inner.get_image_features(
            pixel_values=to_dev(), vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy)), \
            "get_image_features"
    except (AttributeError, TypeError) as e:
        log(f"get_image_features unusable ({e}); timing vision_tower + multi_modal_projector")

    def written_out():
        out = inner.vision_tower(to_dev(), output_hidden_states=True)
        selected = out.hidden_states[cfg.vision_feature_layer]
        if cfg.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        return inner.multi_modal_projector(selected)
    return written_out, "vision_tower+multi_modal_projector"


def forward_first_token(model, ids, pixels):
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    if pixels is not None:
        kwargs["pixel_values"] = pixels.to(device=model.device, dtype=torch.bfloat16)
    try:
        logits = model(**kwargs, logits_to_keep=1).logits
    except TypeError:  # a version without logits_to_keep: every row's logits
        logits = model(**kwargs).logits
    return int(logits[0, -1].argmax().item())


def generate_first_token(model, ids, pixels, pad):
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                  do_sample=False, pad_token_id=pad)
    if pixels is not None:
        kwargs["pixel_values"] = pixels.to(device=model.device, dtype=torch.bfloat16)
    out = model.generate(**kwargs)
    if out.shape[1] != ids.shape[1] + 1:
        raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, wanted 1")
    return int(out[0, -1].item())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", type=int, default=32, help="text tokens after the image")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    peer = Peer(args)

    from transformers import LlavaForConditionalGeneration
    start = time.perf_counter()
    model = LlavaForConditionalGeneration.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation="sdpa",
        device_map=args.device).eval()
    model.generation_config.eos_token_id = None  # nothing stops early
    peer.sync()
    log(f"loaded {args.model} in {time.perf_counter() - start:.1f} s, attention "
        f"{model.config._attn_implementation}")
    cfg = model.config
    vision = cfg.vision_config
    image_token = getattr(cfg, "image_token_id", None)
    if image_token is None:
        image_token = cfg.image_token_index
    positions = (vision.image_size // vision.patch_size) ** 2
    if cfg.vision_feature_select_strategy != "default":
        positions += 1  # "full" keeps the class token
    pad = cfg.text_config.pad_token_id or 0

    g = torch.Generator().manual_seed(7)
    text = torch.randint(3, min(image_token, cfg.text_config.vocab_size), (args.text,), generator=g)
    ids = torch.cat([torch.tensor([1]), torch.full((positions,), image_token), text])[None]
    ids = ids.to(model.device)
    text_ids = ids.clone()
    text_ids[0, 1:1 + positions] = torch.randint(3, int(image_token), (positions,), generator=g)
    pixels = torch.randn(1, 3, vision.image_size, vision.image_size, generator=g)
    shape = dict(batch=1, prompt_len=int(ids.shape[1]), new_tokens=1, image_tokens=positions,
                 text_tokens=args.text)

    with torch.inference_mode():
        fn, path = image_features_fn(model, cfg, pixels)
        peer.measure(dict(name="llava_vision_encode", peer="hf", batch=1, path=path,
                          image_tokens=positions), fn)
        for name, prompt, px in (("llava_ttft_1image", ids, pixels),
                                 ("llava_ttft_text", text_ids, None)):
            peer.measure(dict(shape, name=name, peer="hf_forward"),
                         lambda: forward_first_token(model, prompt, px))
            peer.measure(dict(shape, name=name, peer="hf_generate"),
                         lambda: generate_first_token(model, prompt, px, pad))


if __name__ == "__main__":
    main()
