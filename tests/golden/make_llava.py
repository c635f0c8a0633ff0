#!/usr/bin/env python3
"""Makes the tiny random-weight LLaVA-1.5 and its goldens, with Hugging Face transformers as the
reference. Run on the developer machine only (needs torch, torchvision, transformers, tokenizers,
pillow, scikit-image):

    /tmp/refvenv/bin/python tests/golden/make_llava.py

Writes, under tests/data/:
  tiny-llava/               LlavaForConditionalGeneration (save_pretrained) at the real model's
                            image geometry (336 px, patch 14: 576 image positions) with a small
                            CLIP tower and a small Llama (head_dim 64, so the CUDA kernels take
                            it), a small byte-level BPE tokenizer with <image>, the LLaVA-1.5 chat
                            template and the image processor's settings (do_pad on)
  images/                   small PNG and JPEG copies of scikit-image's sample photographs
  golden/tiny-llava.json    per image: pixel-value summaries; for the model's image: vision
                            features, projector output, logits of a prompt, greedy ids
  golden/tiny-llava.*.f32   the tensors (float32, little endian)
  golden/preprocess.json    the processor's pixel values on the sample photographs at several
                            sizes, with padding on and off (sums and sampled values)
The outputs are committed; this script is how they were made.
"""
import io
import json
import os

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaImageProcessor, LlavaProcessor,
                          PreTrainedTokenizerFast)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
GOLDEN = os.path.join(DATA, "golden")
IMAGES = os.path.join(DATA, "images")
MODEL = os.path.join(DATA, "tiny-llava")

# The chat template of llava-hf/llava-1.5-7b-hf, restated: images first, then the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")

CORPUS = [
    "USER: What is shown in this image? ASSISTANT: A photograph of a cat on a sofa.",
    "The astronaut stands in front of the flag, holding a helmet.",
    "A cup of coffee on a saucer, seen from above, with a spoon beside it.",
    "Describe the picture in one sentence. The colours are warm and the light is soft.",
    "Once upon a time, in a small village, there lived a painter who loved the sea.",
    "def main():\n    print('hello, world')\n",
    "0123456789 numbers, punctuation! question? quotes \"double\" 'single' (brackets) [x] {y}",
]


def make_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def randomize(model, seed):
    """A wider spread than HF's init so that a wrong op shows in the logits; norm weights away
    from 1 and biases away from 0 so that a missing one shows too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and "weight" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif "bias" in name or "norm" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "patch_embedding" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def sample_images():
    """Small copies of scikit-image's photographs, saved as PNG (lossless: the decoder must
    give back these exact pixels) and JPEG (decoders may differ by a little)."""
    os.makedirs(IMAGES, exist_ok=True)
    shots = {
        "astronaut": Image.fromarray(skdata.astronaut()).resize((128, 128), Image.BICUBIC),
        "coffee": Image.fromarray(skdata.coffee()).resize((150, 100), Image.BICUBIC),
        "chelsea": Image.fromarray(skdata.chelsea()).resize((90, 140), Image.BICUBIC),
        "rocket": Image.fromarray(skdata.rocket()).resize((64, 100), Image.BICUBIC),
        "camera_gray": Image.fromarray(skdata.camera()).resize((96, 80), Image.BICUBIC),
        # The astronaut's size: two different images of the same size (end-to-end test).
        "coffee_square": Image.fromarray(skdata.coffee()).resize((128, 128), Image.BICUBIC),
    }
    paths = {}
    for name, im in shots.items():
        png = os.path.join(IMAGES, f"{name}.png")
        im.save(png, optimize=True)
        paths[name + ".png"] = png
    jpg = os.path.join(IMAGES, "chelsea.jpg")
    shots["chelsea"].save(jpg, quality=90)
    paths["chelsea.jpg"] = jpg
    # A larger photograph, upscaled by the processor less: 400x600 coffee at full size as JPEG.
    big = os.path.join(IMAGES, "coffee_full.jpg")
    Image.fromarray(skdata.coffee()).save(big, quality=85)
    paths["coffee_full.jpg"] = big
    return paths


SAMPLE_STRIDE = 509  # prime: the samples walk across channels, rows and columns


def summarize(pixels):
    """Sums over all values and every SAMPLE_STRIDE-th value ([C, H, W] order)."""
    flat = pixels.reshape(-1).astype(np.float64)
    return {
        "shape": list(pixels.shape),
        "sum": float(flat.sum()),
        "sum_abs": float(np.abs(flat).sum()),
        "sample_stride": SAMPLE_STRIDE,
        "samples": [float("%.7g" % v) for v in pixels.reshape(-1)[::SAMPLE_STRIDE]],
    }


def make_preprocess_goldens(paths):
    """The torchvision LLaVA image processor on each sample image, as LLaVA-1.5 sets it up
    (336 px, CLIP mean/std), with the pad-to-square step on and off, and at a smaller crop."""
    cases = []
    settings = [
        ("llava15_pad", dict(do_pad=True)),
        ("llava15_nopad", dict(do_pad=False)),
        ("small_nopad", dict(do_pad=False, size={"shortest_edge": 60},
                             crop_size={"height": 48, "width": 56})),
    ]
    for setting, extra in settings:
        kwargs = dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        kwargs.update(extra)
        proc = LlavaImageProcessor(**kwargs)
        for name, path in paths.items():
            im = Image.open(path)
            pixels = proc(im, return_tensors="pt")["pixel_values"][0].numpy()
            case = {"image": os.path.relpath(path, ROOT), "setting": setting,
                    "processor": {k: v for k, v in proc.to_dict().items()
                                  if k in ("do_pad", "size", "crop_size", "image_mean",
                                           "image_std", "rescale_factor", "resample",
                                           "do_resize", "do_center_crop", "do_rescale",
                                           "do_normalize", "do_convert_rgb")}}
            case.update(summarize(pixels))
            cases.append(case)
    with open(os.path.join(GOLDEN, "preprocess.json"), "w") as f:
        json.dump({"reference": "transformers " + __import__("transformers").__version__ +
                   " LlavaImageProcessor (torchvision " + __import__("torchvision").__version__ +
                   "), images opened with PIL", "cases": cases}, f)
    print(f"preprocess: {len(cases)} cases")


def make_model(tokenizer):
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vocab = len(tokenizer)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=2, image_size=336, patch_size=14,
                              projection_dim=64, layer_norm_eps=1e-5, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=64, max_position_embeddings=2048, rms_norm_eps=1e-5,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                         image_seq_length=576, projector_hidden_act="gelu",
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    torch.manual_seed(5000)
    model = LlavaForConditionalGeneration(config)
    randomize(model, 5000)
    model.save_pretrained(MODEL)
    model.generation_config.save_pretrained(MODEL)
    image_processor = LlavaImageProcessor(size={"shortest_edge": 336},
                                          crop_size={"height": 336, "width": 336}, do_pad=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=14, vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1)
    processor.save_pretrained(MODEL)
    return image_token_id


def save_f32(name, array):
    path = os.path.join(GOLDEN, name)
    np.ascontiguousarray(array, dtype="<f4").tofile(path)
    return name


def make_model_goldens(paths):
    processor = AutoProcessor.from_pretrained(MODEL)
    model = LlavaForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    cases = []
    for n, image_name in enumerate(["astronaut.png", "coffee.png"]):
        im = Image.open(paths[image_name])
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": "What is shown?"}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=im, text=prompt, return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        pixels = inputs["pixel_values"]
        stem = image_name.split(".")[0]
        with torch.no_grad():
            vision = model.model.vision_tower(pixels, output_hidden_states=True)
            selected = vision.hidden_states[model.config.vision_feature_layer][:, 1:]
            projected = model.model.multi_modal_projector(selected)
            logits = model(**inputs, use_cache=False).logits[0]
            greedy = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                    eos_token_id=None, min_new_tokens=12)[0, len(ids):].tolist()
        # Logits of the text rows and of the first and last image rows (every row would be
        # 600 KB for rows that all depend on the same features).
        image_rows = [i for i, t in enumerate(ids) if t == model.config.image_token_id]
        rows = sorted(set(i for i in range(len(ids)) if ids[i] != model.config.image_token_id) |
                      set(image_rows[:2] + image_rows[-2:]))
        case = {
            "image": os.path.relpath(paths[image_name], ROOT),
            "prompt": prompt,
            "ids": ids,
            "pixel_values": summarize(pixels[0].numpy()),
            "logit_rows": rows,
            "logits": save_f32(f"tiny-llava.{stem}.logits.f32", logits[rows].numpy()),
            "logits_shape": [len(rows), logits.shape[1]],
            "greedy": greedy,
        }
        if n == 0:  # the tower's tensors for one image are enough
            case["vision_features"] = save_f32(f"tiny-llava.{stem}.vision.f32",
                                               selected[0].numpy())
            case["vision_features_shape"] = list(selected[0].shape)
            case["projector"] = save_f32(f"tiny-llava.{stem}.projector.f32", projected[0].numpy())
            case["projector_shape"] = list(projected[0].shape)
        cases.append(case)
        print(f"{image_name}: {len(ids)} ids, greedy {greedy}")
    meta = {"model": "tests/data/tiny-llava",
            "reference": "transformers " + __import__("transformers").__version__ + ", fp32 CPU",
            "image_token_id": model.config.image_token_id, "cases": cases}
    with open(os.path.join(GOLDEN, "tiny-llava.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main():
    torch.set_num_threads(1)
    os.makedirs(GOLDEN, exist_ok=True)
    paths = sample_images()
    make_preprocess_goldens(paths)
    tokenizer = make_tokenizer()
    make_model(tokenizer)
    make_model_goldens(paths)
    size = sum(os.path.getsize(os.path.join(MODEL, p)) for p in os.listdir(MODEL))
    print(f"tiny-llava: {size} bytes")


if __name__ == "__main__":
    main()
