#!/usr/bin/env python3
"""Writes the seed corpus for the GGUF, safetensors and image fuzz targets (and their ctest).
The WebP seeds alone: python3 -c "import make_seeds; make_seeds.webp_seeds()" in this folder.
The hf_config/ seeds are hand-written config.json files (smollm2.json as saved by transformers,
tiny_llava.json copied from tests/data/tiny-llava).

GGUF seeds come from gguf-py's GGUFWriter, an implementation independent of ours.
Run with the reference environment: /opt/refpy/bin/python tests/data/fuzz/make_seeds.py
"""
import json
import pathlib
import struct

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def gguf_seeds():
    import gguf
    from gguf import GGMLQuantizationType as T
    out = HERE / "gguf"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)

    def tiny(path, arch, qkv_bias, quant, tied):
        w = gguf.GGUFWriter(str(path), arch)
        hidden, ff, heads, kv, vocab = 32, 64, 2, 1, 8
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(hidden)
        w.add_feed_forward_length(ff)
        w.add_head_count(heads)
        w.add_head_count_kv(kv)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_token_list([f"t{i}" for i in range(vocab)])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)

        def add(name, shape, q=False):
            x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            if q and quant is not None:
                w.add_tensor(name, gguf.quants.quantize(x, quant), raw_dtype=quant)
            else:
                w.add_tensor(name, x)
        hd = hidden // heads
        add("token_embd.weight", (vocab, hidden), True)
        add("blk.0.attn_norm.weight", (hidden,))
        add("blk.0.attn_q.weight", (heads * hd, hidden), True)
        add("blk.0.attn_k.weight", (kv * hd, hidden), True)
        add("blk.0.attn_v.weight", (kv * hd, hidden), True)
        if qkv_bias:
            add("blk.0.attn_q.bias", (heads * hd,))
            add("blk.0.attn_k.bias", (kv * hd,))
            add("blk.0.attn_v.bias", (kv * hd,))
        add("blk.0.attn_output.weight", (hidden, heads * hd), True)
        add("blk.0.ffn_norm.weight", (hidden,))
        add("blk.0.ffn_gate.weight", (ff, hidden), True)
        add("blk.0.ffn_up.weight", (ff, hidden), True)
        add("blk.0.ffn_down.weight", (hidden, ff), True)
        add("output_norm.weight", (hidden,))
        if not tied:
            add("output.weight", (vocab, hidden), True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    tiny(out / "llama_f32.gguf", "llama", False, None, True)
    tiny(out / "llama_q8_0.gguf", "llama", False, T.Q8_0, False)
    tiny(out / "qwen2_q4_1.gguf", "qwen2", True, T.Q4_1, True)

    # Metadata of every value type and K-quant tensors (random blocks with sane f16 scales).
    w = gguf.GGUFWriter(str(out / "types.gguf"), "llama")
    w.add_uint8("u8", 200)
    w.add_int8("i8", -5)
    w.add_uint16("u16", 60000)
    w.add_int16("i16", -300)
    w.add_uint32("u32", 4000000000)
    w.add_int32("i32", -7)
    w.add_float32("f32", 1.5)
    w.add_uint64("u64", 1 << 40)
    w.add_int64("i64", -(1 << 40))
    w.add_float64("f64", 2.25)
    w.add_bool("b", True)
    w.add_string("s", "hello")
    w.add_array("arr_s", ["a", "b"])
    w.add_array("arr_i", [1, 2, 3])
    w.add_array("arr_f", [0.5, 1.5])
    w.add_array("arr_b", [True, False])
    for qt, nbytes in ((T.Q4_K, 144), (T.Q5_K, 176), (T.Q6_K, 210)):
        blk = rng.integers(0, 256, nbytes, dtype=np.uint8)
        if qt == T.Q6_K:
            blk[-2:] = np.array([0.01], dtype=np.float16).view(np.uint8)
        else:
            blk[:4] = np.array([0.01, 0.02], dtype=np.float16).view(np.uint8)
        w.add_tensor(f"{qt.name}.weight", blk.reshape(1, nbytes), raw_dtype=qt)
    w.add_tensor("f16.weight", rng.standard_normal((2, 32)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors_bytes(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    out = HERE / "safetensors"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(6)
    f32 = rng.standard_normal((4, 8)).astype(np.float32)
    f16 = rng.standard_normal((3, 5)).astype(np.float16)
    bf16 = (rng.standard_normal(16).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    (out / "mixed.safetensors").write_bytes(safetensors_bytes({
        "a.weight": ("F32", f32.shape, f32.tobytes()),
        "b.weight": ("F16", f16.shape, f16.tobytes()),
        "c.bias": ("BF16", (16,), bf16.tobytes())}))
    (out / "empty.safetensors").write_bytes(safetensors_bytes({}))
    (out / "scalar.safetensors").write_bytes(safetensors_bytes({
        "s": ("F32", (), np.float32(3.0).tobytes()),
        "z": ("BF16", (0, 4), b"")}))




def image_seeds():
    """Small images of each kind the decoder takes (PIL writes them): RGB and palette PNG with
    transparency, grey and colour JPEG (baseline and progressive), GIF."""
    from PIL import Image
    out = HERE / "image"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(9)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    rgb.save(out / "rgb.png")
    rgb.convert("P").save(out / "palette.png", transparency=0)
    rgb.convert("RGBA").save(out / "rgba.png")
    rgb.save(out / "baseline.jpg", quality=80)
    rgb.save(out / "progressive.jpg", quality=80, progressive=True)
    rgb.convert("L").save(out / "grey.jpg", quality=80)
    rgb.save(out / "frame.gif")


def webp_seeds():
    """WebP seeds: lossless RGB, lossless with alpha, lossy, encoded by libwebp itself (the
    library our decoder uses, through ctypes: no PIL needed)."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("webp"))
    out = HERE / "image"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(11)
    h, w = 12, 16
    rgb = np.ascontiguousarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    rgba = np.ascontiguousarray(np.concatenate(
        [rgb, rng.integers(1, 255, (h, w, 1), dtype=np.uint8)], axis=2))

    def encode(fn, pixels, *quality):
        buf = ctypes.POINTER(ctypes.c_uint8)()
        size = fn(pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), w, h,
                  pixels.shape[1] * pixels.shape[2], *quality, ctypes.byref(buf))
        assert size > 0, fn
        data = ctypes.string_at(buf, size)
        lib.WebPFree(buf)
        return data

    lib.WebPEncodeRGB.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_float, ctypes.c_void_p]
    (out / "lossless.webp").write_bytes(encode(lib.WebPEncodeLosslessRGB, rgb))
    (out / "alpha.webp").write_bytes(encode(lib.WebPEncodeLosslessRGBA, rgba))
    (out / "lossy.webp").write_bytes(encode(lib.WebPEncodeRGB, rgb, ctypes.c_float(80.0)))


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    image_seeds()
    webp_seeds()
    for p in sorted(HERE.glob("*/*")):
        print(p.relative_to(HERE), p.stat().st_size)
